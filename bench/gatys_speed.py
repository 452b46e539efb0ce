"""Iterations per second of Gatys' method (``infer.py method=optimize``) at a few sizes.

    python bench/gatys_speed.py --weights ../shared/weights/vgg16_caffe_features.pth --sizes 256 512
    python bench/gatys_speed.py ... --glibc-default   # without fststyle/memory.py's setting: run both, one after the other
    python bench/gatys_speed.py ... --startup 3       # whole processes: method=optimize's start-up against a plain infer.py

Runs the real optimisation loop (fststyle.gatys.optimize_image) on the given content/style
images with the default loss config (paper layers, network=auto), after one warm-up iteration.
Each row also gives the run's convolution/matmul FLOP rate (torch's FlopCounterMode over the same call, run
again untimed) as a % of this machine's convolution peak in that precision, measured in the same run: the
loss network's forward on the same image, fp32 NCHW or bf16 channels_last.

``--startup N`` instead times whole ``infer.py`` processes, alternating, best of N: ``method=optimize size=128
iterations=1`` (imports, VGG, style targets, one iteration) against ``ckpt=starry_night backend=torch size=128``, the
plain PyTorch process the real-time issue measures it against (target: within 2x).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from fststyle.gatys import OptimizeSettings, build_gatys_loss, optimize_image, resize_long_side  # noqa: E402
from fststyle.hardware import machine_summary, resolve_device, resolve_precision  # noqa: E402
from fststyle.images import load_image  # noqa: E402
from fststyle.memory import keep_freed_memory  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from timing import conv_rate, flops  # noqa: E402 - bench/timing.py


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default=str(ROOT.parent / "shared/weights/vgg16_caffe_features.pth"))
    ap.add_argument("--content", default=str(ROOT.parent / "shared/content/chicago.jpg"))
    ap.add_argument("--style", default=str(ROOT.parent / "shared/styles/starry_night.jpg"))
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--optimizer", default="lbfgs", choices=["lbfgs", "adam"])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--glibc-default", action="store_true", help="leave glibc's allocator as it is (infer.py keeps freed memory: fststyle/memory.py)")
    ap.add_argument("--precisions", nargs="+", default=["fp32", "auto"], help="of the VGG passes (auto: this machine's choice)")
    ap.add_argument("--startup", type=int, metavar="N", help="whole infer.py processes instead: best of N, alternating")
    args = ap.parse_args()
    if args.startup:
        return startup(args)

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("infer", overrides=["method=optimize", "input=x", "output=y", f"loss.weights={args.weights}"])
    device = resolve_device(args.device)
    if not args.glibc_default:
        keep_freed_memory()  # as infer.py method=optimize does
    loss = build_gatys_loss(cfg.loss).to(device)
    content, style = load_image(args.content).to(device), load_image(args.style).to(device)
    print(f"device={device} ({machine_summary(str(device))}, torch threads={torch.get_num_threads()}), "
          f"network={loss.network.network}, optimizer={args.optimizer}")
    print("| long side | image | precision | iterations | seconds | iterations/s | final loss | GFLOP/s | % of conv peak |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        image = resize_long_side(content, size)
        for precision in args.precisions:
            settings = dict(optimizer=args.optimizer, precision=resolve_precision(precision, device.type))
            optimize_image(loss, image, style, OptimizeSettings(iterations=1, **settings), progress=False)
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            _, history = optimize_image(loss, image, style, OptimizeSettings(iterations=args.iterations, **settings), progress=False)
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
            work = flops(lambda: optimize_image(loss, image, style, OptimizeSettings(iterations=args.iterations, **settings), progress=False))
            peak = conv_rate(loss.network.features, loss.network.preprocess(image), settings["precision"])
            h, w = image.shape[-2:]
            print(f"| {size} | {w}x{h} | {settings['precision']} | {args.iterations} | {seconds:.1f} | "
                  f"{args.iterations / seconds:.2f} | {history[-1]['total']:.4g} | {work / seconds / 1e9:.0f} | "
                  f"{100 * work / seconds / peak:.0f}% (peak {peak / 1e9:.0f}) |")


def startup(args) -> None:
    """Wall time of whole ``infer.py`` processes, the two commands alternating so a slow spell hits both."""
    common = [f"input={args.content}", "size=128", "overwrite=true"]
    with tempfile.TemporaryDirectory() as work:
        commands = {
            "method=optimize iterations=1": ["method=optimize", "iterations=1", f"style.image={args.style}",
                                             f"loss.weights={args.weights}", f"output={work}/optimize.jpg"],
            "ckpt=starry_night backend=torch": ["ckpt=starry_night", "backend=torch", f"output={work}/fast.jpg"],
        }
        walls = {name: [] for name in commands}
        for _ in range(args.startup):
            for name, overrides in commands.items():
                start = time.perf_counter()
                subprocess.run([sys.executable, "infer.py", *common, *overrides], cwd=ROOT, check=True, capture_output=True)
                walls[name].append(time.perf_counter() - start)
    print(f"whole infer.py processes, {machine_summary('cpu')}, content {Path(args.content).name} at 128 px, best of {args.startup}:")
    for name, times in walls.items():
        print(f"  {name:34s} best {min(times):.2f} s (runs: {', '.join(f'{t:.2f}' for t in times)})")
    optimize, plain = (min(t) for t in walls.values())
    print(f"start-up ratio: {optimize / plain:.2f}x (target: within 2x)")


if __name__ == "__main__":
    main()
