"""Video frames per second of the full and the lite network, end to end (decode, stylize, encode), one run.

A 640x480 clip (a photo panned across 48 frames) goes through ``stylize_video`` with the engine
infer.py would build (default backend and precision), each network timed round-robin (bench/timing.py),
best of --repeats. The ratio lite / full is the real-time issue's target (>= 5x). A second column times the
networks alone on the clip's decoded frames (one frame a call, as the video path runs them), so what the codec
costs is visible beside what the network costs.

    python bench/lite_speed.py                                  # the zoo's starry_night and starry_night_lite
    python bench/lite_speed.py --full FILE --lite FILE           # any two style files
    python bench/lite_speed.py --candidates                      # random-weight networks of candidate shapes
    python bench/lite_speed.py --size 1280x720 --frames 96
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from timing import best_of_each  # noqa: E402 - bench/timing.py

from fststyle.hardware import machine_summary  # noqa: E402
from fststyle.infer.engine import Engine, InferSettings  # noqa: E402
from fststyle.infer.video import read_frames, stylize_video  # noqa: E402

PHOTO = ROOT.parent / "shared" / "content" / "chicago.jpg"
# Shapes tried for conf/model/lite.yaml (TransformerConfig fields); the full network is the first.
CANDIDATES = {
    "full (johnson)": {},
    "lite: c16 2R k3 (conf/model/lite.yaml)": {"base_channels": 16, "residual_blocks": 2, "end_kernel": 3},
    "c8 3R k5": {"base_channels": 8, "residual_blocks": 3, "end_kernel": 5},
    "c16 1R k3": {"base_channels": 16, "residual_blocks": 1, "end_kernel": 3},
    "2x2 blocks: c16 2R k3": {"base_channels": 16, "residual_blocks": 2, "end_kernel": 3, "block": 2},
    "2x2 blocks: c16 2R k3 skips": {"base_channels": 16, "residual_blocks": 2, "end_kernel": 3, "block": 2, "skips": True},
    "2x2 blocks: c16 5R k3": {"base_channels": 16, "residual_blocks": 5, "end_kernel": 3, "block": 2},
    "2x2 blocks: c32 3R k3": {"base_channels": 32, "residual_blocks": 3, "end_kernel": 3, "block": 2},
}


def make_clip(path: Path, width: int, height: int, frames: int) -> Path:
    """A window panned across a photo (or noise where ../shared is absent), H.264 like a phone's video."""
    import av
    from PIL import Image

    if PHOTO.exists():
        photo = np.asarray(Image.open(PHOTO).convert("RGB").resize((width + 2 * frames, height + frames)))
    else:
        photo = np.random.default_rng(0).integers(0, 256, (height + frames, width + 2 * frames, 3), dtype=np.uint8)
    with av.open(str(path), "w") as sink:
        stream = sink.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for t in range(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(photo[t:t + height, 2 * t:2 * t + width]), format="rgb24")
            sink.mux(stream.encode(frame))
        sink.mux(stream.encode(None))
    return path


def random_style_file(architecture: dict, path: Path) -> Path:
    import torch

    from fststyle.nets.transformer import TransformerConfig, TransformerNet
    from fststyle.stylefile import export_transformer

    torch.manual_seed(0)
    return export_transformer(TransformerNet(TransformerConfig(**architecture)), path, {"name": path.stem})


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", default="starry_night", help="style file or shipped name (default starry_night)")
    parser.add_argument("--lite", default=None, help="style file or shipped name (default: FULL_lite)")
    parser.add_argument("--candidates", action="store_true", help="random-weight networks of the candidate shapes")
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))

    from fststyle.zoo import resolve_model

    print(machine_summary())
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        clip = make_clip(work / "clip.mp4", width, height, args.frames)
        if args.candidates:
            files = {name: random_style_file(arch, work / f"net{i}.safetensors") for i, (name, arch) in enumerate(CANDIDATES.items())}
        else:
            lite = args.lite or f"{args.full}_lite"
            files = {f"full: {args.full}": resolve_model(args.full)[0], f"lite: {lite}": resolve_model(lite)[0]}
        engines = {name: Engine(InferSettings(ckpt=str(f)), Path(f)) for name, f in files.items()}

        def runner(name: str, engine: Engine):
            return lambda: stylize_video(clip, work / f"{abs(hash(name))}.mp4", engine, progress=False)

        seconds = best_of_each({name: runner(name, e) for name, e in engines.items()}, args.repeats)
        frames = read_frames(clip, limit=args.frames)

        def network_only(engine: Engine):
            return lambda: [engine(frame[None]) for frame in frames]

        network = best_of_each({name: network_only(e) for name, e in engines.items()}, args.repeats)
        backend = next(iter(engines.values()))
        print(f"{width}x{height} video, {args.frames} frames, {backend.backend} {backend.precision}, best of {args.repeats}:")
        print(f"  {'':44s} {'decode + stylize + encode':>30s} {'network alone':>24s}")
        first = next(iter(seconds))
        for name in seconds:
            fps, alone = args.frames / seconds[name], args.frames / network[name]
            print(f"  {name:44s} {fps:8.2f} frames/s {seconds[first] / seconds[name]:5.2f}x the first "
                  f"{alone:8.2f} frames/s {network[first] / network[name]:5.2f}x")


if __name__ == "__main__":
    main()
