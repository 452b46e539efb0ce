"""infer.py end to end: images, folders, videos, export, and every bad input (tiny sizes, random-weight style)."""
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image

from fststyle.errors import UserError
from fststyle.infer.deploy import ONNX_TOLERANCE, OpenVinoStylizer
from fststyle.infer.run import run
from fststyle.nets.transformer import TransformerConfig, TransformerNet
from fststyle.stylefile import export_transformer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def style_file(tmp_path) -> Path:
    torch.manual_seed(0)
    return export_transformer(TransformerNet(TransformerConfig(base_channels=8, residual_blocks=1)), tmp_path / "tiny.safetensors", {"name": "tiny"})


def config(*overrides: str):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("infer", overrides=list(overrides))


def infer(*overrides: str):
    return run(config(*overrides))


def picture(path: Path, size=(40, 30), seed=0) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime", "torch"])
def test_image_every_backend_agrees_with_the_api(tmp_path, style_file, backend):
    src = picture(tmp_path / "in.png", (37, 29))
    infer(f"ckpt={style_file}", f"input={src}", f"output={tmp_path / backend}.png", f"backend={backend}")
    out = np.asarray(Image.open(tmp_path / f"{backend}.png"))
    assert out.shape == (29, 37, 3)
    from fststyle import Stylizer

    expected = np.asarray(Stylizer.from_checkpoint(style_file)(Image.open(src)))
    assert np.abs(out.astype(int) - expected).max() <= 1


@pytest.mark.parametrize("backend", ["openvino", "torch"])
@pytest.mark.parametrize("block", [1, 2])
def test_an_image_a_few_pixels_wide_is_stylized(tmp_path, backend, block):
    """Narrower than the network's strided layers need (5x3, 1x1): painted edge-padded, cropped back, no traceback."""
    torch.manual_seed(0)
    net = TransformerNet(TransformerConfig(base_channels=8, residual_blocks=1, end_kernel=3, block=block))
    ckpt = export_transformer(net, tmp_path / "s.safetensors", {"name": "s"})
    for size in ((5, 3), (1, 1), (40, 9)):
        src = picture(tmp_path / f"{size[0]}x{size[1]}.png", size)
        infer(f"ckpt={ckpt}", f"input={src}", f"output={tmp_path / 'out' / src.name}", f"backend={backend}")
        assert Image.open(tmp_path / "out" / src.name).size == size


@pytest.mark.parametrize("block", [1, 2])
def test_the_python_api_paints_an_image_a_few_pixels_wide(block):
    from fststyle.infer.stylizer import Stylizer

    torch.manual_seed(0)
    stylizer = Stylizer(TransformerNet(TransformerConfig(base_channels=8, residual_blocks=1, end_kernel=3, block=block)))
    for h, w in ((3, 5), (1, 1), (9, 40)):
        out = stylizer(torch.rand(3, h, w))
        assert out.shape == (3, h, w) and torch.isfinite(out).all()
    assert stylizer(Image.new("RGB", (5, 3))).size == (5, 3)


def test_cpu_default_is_openvino(tmp_path, style_file, capsys):
    src = picture(tmp_path / "in.png")
    infer(f"ckpt={style_file}", f"input={src}", f"output={tmp_path / 'o.png'}", "device=cpu", "preserve_color=true", "strength=0.5")
    assert "openvino)" in capsys.readouterr().out
    with pytest.raises(UserError, match="backend=openvino runs on the CPU"):
        infer(f"ckpt={style_file}", f"input={src}", f"output={tmp_path / 'p.png'}", "backend=openvino", "device=cuda")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a graph")
    with pytest.raises(UserError, match="not a loadable ONNX model"):
        infer(f"ckpt={bad}", f"input={src}", f"output={tmp_path / 'p.png'}", "backend=openvino")
    assert not (tmp_path / "p.png").exists()


def test_size_and_checkpoint_kinds(tmp_path, style_file):
    src = picture(tmp_path / "in.jpg", (80, 40))
    infer(f"ckpt={style_file}", f"input={src}", f"output={tmp_path / 'out.jpg'}", "size=48", "preserve_color=true", "strength=0.5")
    assert Image.open(tmp_path / "out.jpg").size == (48, 24)


def test_folder_recursive_batches_and_skips(tmp_path, style_file, capsys):
    src = tmp_path / "photos"
    for name in ["a.png", "b.png", "sub/c.jpg", "sub/deeper/d.png"]:
        picture(src / name, (32, 24))
    picture(src / "big.png", (48, 32))
    (src / "notes.txt").write_text("not an image")
    (src / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(UserError, match="2 of 7 input files could not be read"):
        infer(f"ckpt={style_file}", f"input={src}", f"output={tmp_path / 'styled'}", "batch_size=3")
    out = capsys.readouterr().out
    assert "stylized 5 images" in out and "images/s" in out and "notes.txt" in out and "broken.jpg" in out
    for name in ["a.png", "b.png", "sub/c.jpg", "sub/deeper/d.png", "big.png"]:
        assert Image.open(tmp_path / "styled" / name).size == Image.open(src / name).size
    assert not (tmp_path / "styled" / "notes.txt").exists()


def make_video(path: Path, frames=6, size=(48, 32), rate=12, audio=True):
    import av

    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264" if path.suffix != ".gif" else "gif", rate=rate)
        v.width, v.height = size
        v.pix_fmt = "yuv420p" if path.suffix != ".gif" else "rgb8"
        a = out.add_stream("aac", rate=22050) if audio else None
        rng = np.random.default_rng(0)
        for i in range(frames):
            img = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
            for p in v.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(p)
        if a is not None:
            t = np.arange(int(22050 * frames / rate)) / 22050
            samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
            for start in range(0, samples.shape[1], 1024):
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, start:start + 1024]), format="fltp", layout="mono")
                frame.sample_rate = 22050
                for p in a.encode(frame):
                    out.mux(p)
        for s in [v] + ([a] if a else []):
            for p in s.encode():
                out.mux(p)
    return path


@pytest.mark.parametrize("suffix,audio", [(".mp4", True), (".gif", False)])
def test_video_keeps_rate_frames_and_audio(tmp_path, style_file, suffix, audio, capsys):
    import av

    src = make_video(tmp_path / f"clip{suffix}", audio=audio)
    dst = tmp_path / f"styled{suffix}"
    infer(f"ckpt={style_file}", f"input={src}", f"output={dst}", "batch_size=4")
    assert "1 video (6 frames)" in capsys.readouterr().out
    with av.open(str(dst)) as c:
        v = c.streams.video[0]
        assert sum(1 for _ in c.decode(v)) == 6
        assert (v.average_rate or v.guessed_rate) == Fraction(12) or suffix == ".gif"
        assert (v.codec_context.width, v.codec_context.height) == (48, 32)
    if audio:
        with av.open(str(dst)) as c:
            assert c.streams.audio and c.streams.audio[0].codec_context.name == "aac"


def test_export_onnx_and_torchscript(tmp_path, style_file):
    import onnxruntime as ort

    infer(f"ckpt={style_file}", "export=onnx", f"output={tmp_path / 'net.onnx'}")
    infer(f"ckpt={style_file}", "export=torchscript", f"output={tmp_path / 'net.pt'}")
    x = torch.rand(2, 3, 30, 45)
    from fststyle.infer.stylizer import Stylizer

    expected = Stylizer.from_checkpoint(style_file)(x)
    onnx_out = ort.InferenceSession(str(tmp_path / "net.onnx")).run(None, {"image": x.numpy()})[0]
    assert np.abs(onnx_out - expected.numpy()).max() < ONNX_TOLERANCE
    openvino = OpenVinoStylizer(tmp_path / "net.onnx")
    for _ in range(3):  # the second call of a shape compiles a model for that shape alone: the same pixels
        assert np.abs(openvino(x.numpy()) - expected.numpy()).max() < ONNX_TOLERANCE
    assert list(openvino.static) == [(2, 3, 30, 45)]
    assert (torch.jit.load(str(tmp_path / "net.pt"))(x) - expected).abs().max() < 1e-5
    # an exported .onnx works as ckpt= for backend=onnxruntime
    src = picture(tmp_path / "in.png")
    infer(f"ckpt={tmp_path / 'net.onnx'}", f"input={src}", f"output={tmp_path / 'o.png'}", "backend=onnxruntime")


def test_openvino_models_freed_in_any_order_leave_the_signal_stack_alone(tmp_path, style_file):
    """OpenVINO's CPU plugin swaps the thread's signal stack per compiled model; freed oldest first, the thread was
    left on an unmapped stack and the next child process to exit crashed pytest (CI, exit 139)."""
    import ctypes
    import gc

    from fststyle.infer.deploy import cached_onnx

    class Stack(ctypes.Structure):
        _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]

    def current():
        stack = Stack()
        assert ctypes.CDLL(None).sigaltstack(None, ctypes.byref(stack)) == 0
        return stack.ss_sp, stack.ss_flags, stack.ss_size

    before = current()
    onnx = cached_onnx(style_file)
    first, second = OpenVinoStylizer(onnx), OpenVinoStylizer(onnx)
    video = OpenVinoStylizer(onnx)
    video.STATIC_SHAPES = 1
    for shape in [(1, 3, 16, 16)] * 2 + [(1, 3, 24, 16)] * 2:  # the second shape's model replaces the first's
        video(np.random.default_rng(0).random(shape, dtype=np.float32))
    assert list(video.static) == [(1, 3, 24, 16)]
    del first
    gc.collect()
    del second, video
    gc.collect()
    assert current() == before
    assert subprocess.run([sys.executable, "-c", "pass"]).returncode == 0  # a child exits: the signal is handled


def test_never_overwrites(tmp_path, style_file):
    src = picture(tmp_path / "in.png")
    with pytest.raises(UserError, match="overwrite the input"):
        infer(f"ckpt={style_file}", f"input={src}", f"output={src}")
    dst = picture(tmp_path / "out.png", seed=1)
    before = dst.read_bytes()
    with pytest.raises(UserError, match="exists; pass overwrite=true"):
        infer(f"ckpt={style_file}", f"input={src}", f"output={dst}")
    assert dst.read_bytes() == before
    infer(f"ckpt={style_file}", f"input={src}", f"output={dst}", "overwrite=true")
    assert dst.read_bytes() != before


def test_bad_checkpoints(tmp_path, style_file):
    src = picture(tmp_path / "in.png")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 100)
    with pytest.raises(UserError, match="not an fststyle style file"):
        infer(f"ckpt={garbage}", f"input={src}", f"output={tmp_path / 'o.png'}", "backend=torch")
    with pytest.raises(UserError, match="not an fststyle style file"):
        infer(f"ckpt={garbage}", f"input={src}", f"output={tmp_path / 'o.png'}")  # onnxruntime path exports first
    other = tmp_path / "other.safetensors"
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(other))
    with pytest.raises(UserError, match="not an fststyle style file"):
        infer(f"ckpt={other}", f"input={src}", f"output={tmp_path / 'o.png'}")
    ckpt = tmp_path / "bad.ckpt"
    ckpt.write_bytes(b"PK not a zip")
    with pytest.raises(UserError, match="not a readable checkpoint"):
        infer(f"ckpt={ckpt}", f"input={src}", f"output={tmp_path / 'o.png'}")
    with pytest.raises(UserError, match="no such file"):
        infer(f"ckpt={tmp_path / 'missing.safetensors'}", f"input={src}", f"output={tmp_path / 'o.png'}")
    assert not (tmp_path / "o.png").exists()


def test_unwritable_output_fails_before_work(tmp_path, style_file, monkeypatch):
    import fststyle.infer.run as cli

    src = picture(tmp_path / "in.png")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setattr(cli, "Engine", lambda *a: pytest.fail("model loaded before the output check"))
    with pytest.raises(UserError, match="not writable"):
        infer(f"ckpt={style_file}", f"input={src}", f"output={blocker / 'sub' / 'o.png'}")


def test_cli_error_is_one_line_and_exit_code(tmp_path, style_file):
    src = picture(tmp_path / "in.png")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"junk")
    proc = subprocess.run([sys.executable, "infer.py", f"ckpt={bad}", f"input={src}", f"output={tmp_path / 'o.png'}"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error: ")


def test_tile_option(tmp_path, style_file):
    from fststyle.infer.run import Engine, infer_settings

    def engine(*overrides):
        return Engine(infer_settings(config("input=x", "output=y", *overrides)), style_file)

    bf16 = engine("precision=bf16")  # on the CPU with OpenVINO in bf16: 4K whole (exact, within 2 GB), 8K in pieces
    assert bf16.backend == "openvino" and bf16.tile == 512 and not bf16.tiled(2160, 3840) and bf16.tiled(4320, 7680)
    fp32 = engine("precision=fp32")  # fp32 activations are twice the size: 4K in PyTorch's bands (memory)
    assert fp32.backend == "openvino" and fp32.tile == 512 and not fp32.tiled(1080, 1920) and fp32.tiled(2160, 3840)
    torch_auto = engine("backend=torch", "device=cpu")  # PyTorch on the CPU: 4K in bands (memory)
    assert torch_auto.tile == 512 and not torch_auto.tiled(1080, 1920) and torch_auto.tiled(2160, 3840)
    assert engine("tile=1024").tiled(1080, 1920)
    assert engine("tile=null").tile is None and engine("tile=2048", "backend=torch").tile == 2048
    for bad in ["tile=abc", "tile=8", "tile=true"]:
        with pytest.raises(UserError, match="tile must be auto, null or a number"):
            engine(bad)
    # above the tile size the image goes through PyTorch's bands, whatever the backend: the same picture
    src = picture(tmp_path / "in.png", (150, 90))
    infer(f"ckpt={style_file}", f"input={src}", f"output={tmp_path / 'tiled.png'}", "tile=64", "overlap=32")
    infer(f"ckpt={style_file}", f"input={src}", f"output={tmp_path / 'whole.png'}")
    tiled, whole = (np.asarray(Image.open(tmp_path / f"{n}.png")).astype(int) for n in ("tiled", "whole"))
    assert tiled.shape == whole.shape == (90, 150, 3) and np.abs(tiled - whole).mean() < 2  # the seam bound, /255
