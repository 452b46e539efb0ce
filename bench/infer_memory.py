"""Peak memory (RSS) and time stylizing a 3840x2160 image, each way in its own process: the untiled PyTorch
baseline, infer.py's default (tile=auto: 4K whole with OpenVINO in bf16, in PyTorch's exact bands in fp32) or the
--tile given, and infer.py tile=null (one untiled pass).

    python bench/infer_memory.py [--tile-stats exact|downscaled] [--tile auto|N] [--skip-baseline] [--skip-untiled]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BASELINE = """
import sys, torch
sys.path.insert(0, {root!r})
from fststyle.stylefile import load_transformer
from PIL import Image
import torchvision.transforms.functional as TF
net, _ = load_transformer({style!r})
x = TF.to_tensor(Image.open({src!r}).convert("RGB")).unsqueeze(0)
with torch.no_grad():
    y = net(x)
TF.to_pil_image(y[0]).save({dst!r})
"""


def peak_rss(cmd: list[str]) -> tuple[float, float]:
    """(peak RSS in GB, wall seconds) of ``cmd`` run alone, via GNU time."""
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"{cmd} failed:\n{proc.stderr[-2000:]}")
    return int(proc.stderr.strip().splitlines()[-1]) / 1024**2, wall


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tile-stats", default="exact")
    parser.add_argument("--tile", default="auto", help="infer.py's tile= (auto; N: pieces of about N x N pixels in PyTorch)")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--skip-untiled", action="store_true", help="do not also run infer.py tile=null (one pass)")
    args = parser.parse_args()
    import numpy as np
    import torch
    from PIL import Image

    sys.path.insert(0, str(ROOT))
    from fststyle.nets.transformer import TransformerNet
    from fststyle.stylefile import export_transformer

    work = Path(tempfile.mkdtemp(prefix="fststyle-mem-"))
    torch.manual_seed(0)
    style = export_transformer(TransformerNet(), work / "random.safetensors", {"name": "random"})
    src = work / "uhd.png"
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (68, 120, 3), dtype=np.uint8)
    Image.fromarray(small).resize((3840, 2160), Image.Resampling.BICUBIC).save(src)
    from fststyle.hardware import machine_summary

    env_note = machine_summary()
    print(f"3840x2160 image, random-weight network, {env_note}")
    if not args.skip_baseline:
        code = BASELINE.format(root=str(ROOT), style=str(style), src=str(src), dst=str(work / "base.png"))
        rss, wall = peak_rss([sys.executable, "-c", code])
        print(f"baseline (fp32 eager, untiled):             peak RSS {rss:5.2f} GB, {wall:6.1f} s")
    runs = [[f"tile={args.tile}", f"tile_stats={args.tile_stats}"]]
    if not args.skip_untiled:
        runs.append(["tile=null"])
    results = {}
    for options in runs * 2:  # round-robin; the first round also fills the caches (graphs exported, compiled)
        cmd = [sys.executable, "infer.py", f"ckpt={style}", f"input={src}", f"output={work / 'ours.png'}", "overwrite=true", *options]
        results[" ".join(options)] = peak_rss(cmd)
    for name, (rss, wall) in results.items():
        print(f"infer.py {name}: peak RSS {rss:5.2f} GB, {wall:6.1f} s (second run, caches warm)")
    if len(results) == 2:
        (_, tiled), (_, whole) = results.values()
        print(f"tile={args.tile} / tile=null wall time: {tiled / whole:.2f}x (one process each: start-up, PNG decode and encode included)")


if __name__ == "__main__":
    main()
