"""The one writer: complete files or none, whatever runs beside it."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fststyle.atomic import atomic_path, write_text

ROOT = Path(__file__).resolve().parents[1]


def test_replaces_the_file_and_leaves_no_temp(tmp_path):
    dest = tmp_path / "sub" / "out.json"
    with atomic_path(dest) as tmp:
        assert tmp.parent == dest.parent and tmp.suffix == ".json" and tmp != dest
        tmp.write_text("new")
    assert dest.read_text() == "new"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["out.json"]
    assert dest.stat().st_mode & 0o777 == 0o644


def test_a_failed_write_keeps_the_old_file_and_removes_the_temp(tmp_path):
    dest = write_text(tmp_path / "out.txt", "old")
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert dest.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_every_writer_gets_its_own_temp_name(tmp_path):
    with atomic_path(tmp_path / "a.png") as first, atomic_path(tmp_path / "a.png") as second:
        assert first != second
        first.write_bytes(b"1")
        second.write_bytes(b"2")
    assert (tmp_path / "a.png").read_bytes() in (b"1", b"2")


WRITER = """
import sys
import numpy as np
from pathlib import Path
from fststyle.images import save_image as write_image
value, dest = int(sys.argv[1]), Path(sys.argv[2])
for _ in range(20):
    write_image(np.full((256, 256, 3), value, np.uint8), dest)
"""


def test_four_processes_writing_one_output(tmp_path):
    """The output race of the reliability issue: a shared temp name made one writer fail every round."""
    dest = tmp_path / "big_out.png"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(v), str(dest)], cwd=ROOT, stderr=subprocess.PIPE, text=True)
             for v in (10, 80, 160, 240)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    pixels = np.asarray(Image.open(dest))
    assert pixels.shape == (256, 256, 3) and len(np.unique(pixels)) == 1 and int(pixels[0, 0, 0]) in (10, 80, 160, 240)
    assert [p.name for p in tmp_path.iterdir()] == ["big_out.png"]


CACHER = """
import sys
from fststyle import zoo
from fststyle.infer.deploy import cached_onnx
import onnx
path = cached_onnx(zoo.ZOO_DIR / "starry_night.safetensors")
onnx.checker.check_model(str(path))
print(path)
"""


@pytest.mark.parametrize("round_", [1, 2])
def test_four_processes_using_a_style_for_the_first_time(tmp_path, round_):
    """Concurrent first use of a style: fixed `.tmp` names once left a broken cache entry behind."""
    pytest.importorskip("onnx")
    env = {**__import__("os").environ, "FSSTYLE_CACHE": str(tmp_path / "cache")}
    procs = [subprocess.Popen([sys.executable, "-c", CACHER], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    paths = set()
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-2000:]
        paths.add(out.strip().splitlines()[-1])
    assert len(paths) == 1
    entries = list((tmp_path / "cache" / "onnx").iterdir())
    assert [e.name for e in entries] == [Path(paths.pop()).name]  # no temp file left
