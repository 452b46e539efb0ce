"""Make docs/flicker_strip.jpg: consecutive frames of a panned clip, stylized by each model, with the
frame-to-frame change after undoing the known motion (brighter = more flicker; x4).

    python docs/flicker_strip.py ../shared/content/chicago.jpg MODEL [MODEL ...] --out docs/flicker_strip.jpg
"""
import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from fststyle.evaluate import make_grid, to_pil
from fststyle.infer.stylizer import Stylizer
from fststyle.nets.stability import pan_clip, warped_difference
from fststyle.style import load_image
from fststyle.zoo import resolve_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photo")
    parser.add_argument("models", nargs="+")
    parser.add_argument("--out", default="docs/flicker_strip.jpg")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--crop", type=int, default=160, help="side of the square shown from each frame")
    parser.add_argument("--pan", default="1,2")
    parser.add_argument("--frames", type=int, default=4)
    args = parser.parse_args()
    pan = tuple(int(v) for v in args.pan.split(","))
    clip = pan_clip(load_image(args.photo, args.size)[0], 8, pan)
    rows = [[(to_pil(clip[t:t + 1, :, :args.crop, :args.crop]), f"input {t}") for t in range(args.frames)]]
    for spec in args.models:
        path, name = resolve_model(spec)
        out = Stylizer.from_checkpoint(path).stylize_tensor(clip)
        flicker = warped_difference(out, pan)
        dy, dx = pan
        change = ((out[1:, :, :-dy or None, :-dx or None] - out[:-1, :, dy:, dx:]).abs() * 4).clamp(0, 1)
        cells = [(to_pil(out[t:t + 1, :, :args.crop, :args.crop]), f"{name} {t}") for t in range(args.frames)]
        cells[0] = (cells[0][0], f"{name}: flicker {flicker:.1f}")
        cells += [(to_pil(change[t:t + 1, :, :args.crop, :args.crop]), f"change x4 {t}->{t + 1}") for t in range(2)]
        rows.append(cells)
    make_grid(rows, args.crop).save(args.out, quality=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    with torch.inference_mode():
        main()
