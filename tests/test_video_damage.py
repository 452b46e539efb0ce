"""Damaged and truncated videos: damaged packets skipped and counted, a truncated file says how many frames it
gave, a file with no decodable frame is one error line; never a traceback, never a partial output left."""
import numpy as np
import pytest

from fststyle.errors import UserError
from fststyle.infer.video import stylize_video
from tests.test_infer import make_video

FRAMES = 48


def identity(batch: np.ndarray) -> np.ndarray:
    return batch


@pytest.fixture
def clip(tmp_path):
    return make_video(tmp_path / "clip.mp4", frames=FRAMES, size=(64, 48), audio=False)


@pytest.fixture
def faststart_clip(tmp_path):
    """The index at the front (as streaming sites store mp4): a truncated copy still plays its first frames."""
    import av

    path = tmp_path / "front.mp4"
    with av.open(str(path), "w", options={"movflags": "faststart"}) as out:
        v = out.add_stream("libx264", rate=12)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        rng = np.random.default_rng(0)
        for _ in range(FRAMES):
            for packet in v.encode(av.VideoFrame.from_ndarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), format="rgb24")):
                out.mux(packet)
        for packet in v.encode():
            out.mux(packet)
    return path


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or ".tmp" in p.name)


def test_zeroed_bytes_mid_file_skip_frames_with_a_count(tmp_path, clip, capsys):
    data = bytearray(clip.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 2000] = bytes(2000)
    bad = tmp_path / "zeroed.mp4"
    bad.write_bytes(bytes(data))
    out = tmp_path / "out.mp4"
    frames = stylize_video(bad, out, identity, progress=False)
    err = capsys.readouterr().err
    assert 0 < frames < FRAMES and out.is_file()
    assert "warning: zeroed.mp4: skipped" in err and "damaged packet(s)" in err
    assert f"wrote {frames} of {FRAMES} frames" in err
    assert leftovers(tmp_path) == []


def test_truncated_file_says_how_many_frames_it_gave(tmp_path, faststart_clip, capsys):
    bad = tmp_path / "cut.mp4"
    data = faststart_clip.read_bytes()
    bad.write_bytes(data[: int(len(data) * 0.4)])
    out = tmp_path / "out.mp4"
    frames = stylize_video(bad, out, identity, progress=False)
    err = capsys.readouterr().err
    assert 0 < frames < FRAMES and f"cut.mp4: wrote {frames} of {FRAMES} frames" in err, err
    assert leftovers(tmp_path) == []


def test_truncated_file_with_the_index_at_the_end_is_one_error(tmp_path, clip):
    bad = tmp_path / "cut.mp4"
    data = clip.read_bytes()
    bad.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(UserError, match="cannot read video") as e:
        stylize_video(bad, tmp_path / "out.mp4", identity, progress=False)
    assert "\n" not in str(e.value) and not (tmp_path / "out.mp4").exists() and leftovers(tmp_path) == []


def test_header_without_frames_is_one_error_and_nothing_written(tmp_path, clip):
    bad = tmp_path / "header.mp4"
    bad.write_bytes(clip.read_bytes()[:600])
    out = tmp_path / "out.mp4"
    with pytest.raises(UserError) as e:
        stylize_video(bad, out, identity, progress=False)
    assert "\n" not in str(e.value)
    assert not out.exists() and leftovers(tmp_path) == []
