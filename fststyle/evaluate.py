"""Compare style models on photos: a labelled grid and a table of style/content distances.

    python -m fststyle.evaluate MODEL [MODEL ...] --photos DIR_OR_FILES [--out evaluation]

A MODEL is an exported ``.safetensors``, a training ``.ckpt`` or the name of a shipped style. Each
photo is stylized at ``--size`` px (long side) by each model and measured with
:mod:`fststyle.quality`. The ``photo`` rows are the photo itself measured against each style:
a model's style distance divided by that is how much of the way to the painting it went.

A multi-style file counts as one model per style (``multi.safetensors:wave``). ``--flicker`` adds the
temporal measure of :mod:`fststyle.nets.stability`: each photo becomes a clip panned ``--pan DY,DX`` pixels per
frame with fresh sensor-like noise, and ``flicker`` is the mean difference (0-255) of consecutive stylized
frames after undoing the known motion (``input_flicker``: the same for the input frames). ``--video FILE``
does the same on a real video, without motion compensation.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from PIL import Image, ImageDraw

from fststyle.errors import UserError, exit_code
from fststyle.nets.stability import consecutive_difference, pan_clip, warped_difference
from fststyle.nets.vgg import LossNetwork
from fststyle.quality import PHOTO_SIZE, STYLE_SIZE, QualityMeter
from fststyle.style import load_image, resolve_image
from fststyle.stylefile import StyleMeta, style_names_of
from fststyle.train.data import IMAGE_EXTENSIONS
from fststyle.zoo import resolve_model

CELL = 320  # default grid cell height in pixels


@dataclass
class Row:
    model: str
    photo: str
    style: float
    content: float
    photo_style: float  # the photo's own style distance to this model's style image
    seconds: float
    flicker: float = float("nan")  # with --flicker / --video: 0-255, consecutive stylized frames after the motion
    input_flicker: float = float("nan")  # the same of the input frames (their noise)


def photo_paths(specs: list[str]) -> list[Path]:
    paths: list[Path] = []
    for spec in specs:
        p = Path(spec).expanduser()
        if p.is_dir():
            paths += sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_EXTENSIONS and q.is_file())
        elif p.is_file():
            paths.append(p)
        else:
            raise UserError(f"--photos: no such file or folder {spec!r}")
    if not paths:
        raise UserError(f"--photos: no images in {', '.join(specs)}")
    return paths


def style_image_of(meta: StyleMeta, styles_dir: str | None, override: str | None) -> Path:
    """The style image a model was trained on: --style-image, else <styles_dir>/<style>.jpg, else its metadata."""
    if override:
        return resolve_image(override)
    name, image = meta.style, meta.style_image
    if styles_dir:  # <style>.jpg, or the file name of the image it was trained on (a variant: starry_night_stable)
        for candidate in [f"{name}{ext}" for ext in (".jpg", ".jpeg", ".png")] + [Path(urlparse(image).path).name]:
            if candidate and (Path(styles_dir).expanduser() / candidate).is_file():
                return Path(styles_dir).expanduser() / candidate
    if not image:
        raise UserError(f"model {name!r} does not say which style image it was trained on: pass --style-image PATH")
    return resolve_image(image, meta.style_sha256 or None)


def label(image: Image.Image, text: str) -> Image.Image:
    draw = ImageDraw.Draw(image)
    box = draw.textbbox((4, 4), text)
    draw.rectangle((box[0] - 3, box[1] - 3, box[2] + 3, box[3] + 3), fill=(0, 0, 0))
    draw.text((4, 4), text, fill=(255, 255, 255))
    return image


def to_pil(tensor: torch.Tensor) -> Image.Image:
    array = (tensor[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype("uint8")
    return Image.fromarray(array)


def make_grid(cells: list[list[tuple[Image.Image, str]]], cell: int = CELL) -> Image.Image:
    """One row per photo; every cell scaled to ``cell`` px high and labelled."""
    rows = []
    for row in cells:
        scaled = [label(im.resize((round(im.width * cell / im.height), cell), Image.Resampling.LANCZOS), text) for im, text in row]
        rows.append(scaled)
    width = max(sum(im.width for im in row) + 4 * (len(row) - 1) for row in rows)
    grid = Image.new("RGB", (width, len(rows) * cell + 4 * (len(rows) - 1)), (255, 255, 255))
    for r, row in enumerate(rows):
        x = 0
        for im in row:
            grid.paste(im, (x, r * (cell + 4)))
            x += im.width + 4
    return grid


def evaluate(
    models: list[str],
    photos: list[str],
    out: str | Path = "evaluation",
    size: int = PHOTO_SIZE,
    weights: str = "caffe",
    styles_dir: str | None = None,
    style_image: str | None = None,
    device: str = "cpu",
    cell: int = CELL,
    flicker: bool = False,
    pan: tuple[int, int] = (1, 2),
    video: str | None = None,
) -> list[Row]:
    """Stylize every photo with every model; write ``grid.jpg``, ``metrics.csv`` and ``metrics.json`` to ``out``."""
    from fststyle.infer.stylizer import Stylizer

    paths = photo_paths(photos)
    network = LossNetwork("vgg16", weights, layers=["relu4_3"]).to(device)
    stylizers, meters, names = [], [], []
    for spec in models:
        path, name = resolve_model(spec)
        multi = style_names_of(path) if path.suffix == ".safetensors" else []
        for style in multi or [None]:
            stylizer = Stylizer.from_checkpoint(path, device=device, style=style)
            image = load_image(style_image_of(stylizer.metadata, styles_dir, style_image), STYLE_SIZE)
            stylizers.append(stylizer)
            meters.append(QualityMeter(network, image))
            names.append(f"{name}:{style}" if style else name)
    rows: list[Row] = []
    cells = []
    for photo_path in paths:
        photo = load_image(photo_path, size).to(device)
        photo_feats = meters[0].features(photo)  # the meters share one network: once per photo
        row_cells = [(to_pil(photo.cpu()), photo_path.name)]
        for name, stylizer, meter in zip(names, stylizers, meters):
            start = time.perf_counter()
            output = stylizer.stylize_tensor(photo)
            seconds = time.perf_counter() - start
            feats = meter.features(output)
            style, content = meter.style_from(feats).item(), meter.content_from(feats, photo_feats).item()
            rows.append(Row(name, photo_path.name, style, content, meter.style_from(photo_feats).item(), seconds))
            if flicker:
                rows[-1].flicker, rows[-1].input_flicker = clip_flicker(stylizer, photo[0].cpu(), pan)
            row_cells.append((to_pil(output.cpu()), f"{name}  style {rows[-1].style:.3f}  content {rows[-1].content:.3f}"))
        cells.append(row_cells)
    if video:
        rows += video_flicker(Path(video), names, stylizers, size)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    make_grid(cells, cell).save(out / "grid.jpg", quality=90)
    summary = means(rows, names)
    with open(out / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(asdict(rows[0])))
        writer.writeheader()
        writer.writerows([asdict(r) for r in rows + summary])
    (out / "metrics.json").write_text(json.dumps({"rows": [asdict(r) for r in rows], "mean": [asdict(r) for r in summary]}, indent=2))
    return rows + summary


def clip_flicker(stylizer, photo: torch.Tensor, pan: tuple[int, int], frames: int = 8) -> tuple[float, float]:
    """(stylized, input) flicker of a clip panned over ``photo`` (3, H, W) by ``pan`` px per frame, noise added."""
    clip = pan_clip(photo, frames, pan)
    return warped_difference(stylizer.stylize_tensor(clip), pan), warped_difference(clip, pan)


def video_flicker(path: Path, names: list[str], stylizers: list, size: int) -> list[Row]:
    """Each model's frame-to-frame difference on a real video (no motion compensation), input's alongside."""
    from fststyle.infer.video import read_frames

    frames = torch.from_numpy(read_frames(path, size)).permute(0, 3, 1, 2).float() / 255
    nan = float("nan")
    rows = []
    for name, stylizer in zip(names, stylizers):
        start = time.perf_counter()
        stylized = torch.cat([stylizer.stylize_tensor(f[None]) for f in frames])
        seconds = (time.perf_counter() - start) / len(frames)
        rows.append(Row(name, path.name, nan, nan, nan, seconds, consecutive_difference(stylized), consecutive_difference(frames)))
    return rows


def means(rows: list[Row], names: list[str]) -> list[Row]:
    summary = []
    keys = ("style", "content", "photo_style", "seconds", "flicker", "input_flicker")
    for name in names:
        mine = [r for r in rows if r.model == name and r.style == r.style]  # photos (a video row has no distances)
        avg = {k: sum(getattr(r, k) for r in mine) / len(mine) for k in keys}
        summary.append(Row(name, "(mean)", **avg))
    return summary


def print_table(rows: list[Row], file=None) -> None:
    file = file or sys.stdout
    flicker = any(r.flicker == r.flicker for r in rows)  # not all NaN
    extra = f" {'flicker':>8} {'input':>6}" if flicker else ""
    print(f"{'model':<24} {'photo':<28} {'style':>7} {'content':>8} {'photo→style':>12} {'ratio':>6} {'s/image':>8}{extra}", file=file)
    for r in rows:
        ratio = r.style / r.photo_style if r.photo_style else float("nan")
        extra = f" {r.flicker:8.2f} {r.input_flicker:6.2f}" if flicker else ""
        print(f"{r.model:<24} {r.photo:<28} {r.style:7.3f} {r.content:8.3f} {r.photo_style:12.3f} {ratio:6.2f} {r.seconds:8.3f}{extra}", file=file)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fststyle.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="exported .safetensors, training .ckpt, or a shipped style name")
    parser.add_argument("--photos", nargs="+", required=True, help="content photos: files and/or folders")
    parser.add_argument("--out", default="evaluation", help="folder for grid.jpg, metrics.csv, metrics.json")
    parser.add_argument("--size", type=int, default=PHOTO_SIZE, help="long side of the photos in pixels")
    parser.add_argument("--weights", default="caffe", help="VGG16 weights of the measure: caffe (download), torchvision or a PATH")
    parser.add_argument("--styles", help="folder with <style>.jpg style images (else the model's metadata says where)")
    parser.add_argument("--style-image", help="one style image for every model")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cell", type=int, default=CELL, help="height of each picture in the grid, in pixels")
    parser.add_argument("--flicker", action="store_true", help="also measure flicker on a clip panned over each photo")
    parser.add_argument("--pan", default="1,2", help="that clip's motion, DY,DX pixels per frame (default 1,2: below the stride of 4)")
    parser.add_argument("--video", help="also measure frame-to-frame flicker on this video file")
    args = parser.parse_args(argv)

    def run() -> None:
        try:
            pan = tuple(int(v) for v in args.pan.split(","))
            if len(pan) != 2 or min(pan) < 0:
                raise ValueError
        except ValueError:
            raise UserError(f"--pan must be DY,DX (whole pixels >= 0), got {args.pan!r}") from None
        rows = evaluate(
            args.models, args.photos, args.out, args.size, args.weights, args.styles, args.style_image, args.device, args.cell,
            args.flicker, pan, args.video,
        )
        print_table(rows)
        print(f"wrote {Path(args.out) / 'grid.jpg'}, metrics.csv, metrics.json")

    return exit_code(run)


if __name__ == "__main__":
    sys.exit(main())
