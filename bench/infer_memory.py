"""Peak memory (RSS) stylizing a 3840x2160 image: untiled baseline vs infer.py with tiling, each in its own process.

    python bench/infer_memory.py [--tile-stats exact|downscaled] [--skip-baseline]
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
    parser.add_argument("--tile", default="auto", help="infer.py's tile= (auto: 1024-px tiles for 4K on the CPU)")
    parser.add_argument("--skip-baseline", action="store_true")
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
    cmd = [sys.executable, "infer.py", f"ckpt={style}", f"input={src}", f"output={work / 'ours.png'}",
           f"tile={args.tile}", f"tile_stats={args.tile_stats}"]
    rss, wall = peak_rss(cmd)
    print(f"infer.py tile={args.tile} tile_stats={args.tile_stats}: peak RSS {rss:5.2f} GB, {wall:6.1f} s")


if __name__ == "__main__":
    main()
