"""Compare style models on photos: a labelled grid and a table of style/content distances.

    python -m fststyle.evaluate MODEL [MODEL ...] --photos DIR_OR_FILES [--out evaluation]

A MODEL is an exported ``.safetensors``, a training ``.ckpt`` or the name of a shipped style. Each
photo is stylized at ``--size`` px (long side) by each model and measured with
:mod:`fststyle.measures.quality`. The ``photo`` rows are the photo itself measured against each style:
a model's style distance divided by that is how much of the way to the painting it went.

A multi-style file counts as one model per style (``multi.safetensors:wave``). ``--flicker`` adds the
temporal measure of :mod:`fststyle.measures.flicker`: each photo becomes a clip panned ``--pan DY,DX`` pixels per
frame with fresh sensor-like noise, and ``flicker`` is the mean difference (0-255) of consecutive stylized
frames after undoing the known motion (``input_flicker``: the same for the input frames). ``--video FILE``
does the same on a real video, without motion compensation.

Each row also has the style distance per layer (relu1_2 ... relu4_3: the mean hides a missing scale) and
the weave (:mod:`fststyle.measures.weave`: ~1 = no periodic ripple beyond the photo's own structure) and the
grid (the share of the fine band on the spectral lines of the network's 4-px stride, beyond the photo's: 0 = nothing
locked to the grid), the edge (:mod:`fststyle.measures.edges`: stripes painted along the border, ~1 or below = none)
and the ripple (the percent of the fine band in sharp spectral peaks the photo does not have: 0 = none; what
``loss.ripple_weight`` trains against), the stroke and the paint (:mod:`fststyle.measures.strokes`: the size in px of the
marks painted over the photo, and their share of the output's light and shade: near 0 = a filtered photo).
``--outputs NAME=DIR`` measures existing images the same way (e.g. another tool's, named
``<photo>_<style>[_variant].jpg``), so any tool's results can be compared with ours on the same photos.
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
import torch.nn.functional as F
from PIL import Image, ImageDraw

from fststyle.atomic import atomic_path, write_text
from fststyle.errors import UserError, exit_code
from fststyle.images import IMAGE_EXTENSIONS, load_image, save_image, to_pil
from fststyle.measures.edges import edge_ratios, edge_stripes
from fststyle.measures.flicker import consecutive_difference, pan_clip, warped_difference
from fststyle.measures.quality import PHOTO_SIZE, STYLE_LAYERS, STYLE_SIZE, QualityMeter
from fststyle.measures.strokes import painted_share, stroke_period
from fststyle.measures.weave import WeaveMeter, band_stats, grid_added, grid_lines, ripple_share
from fststyle.nets.vgg import LossNetwork
from fststyle.style import resolve_image
from fststyle.stylefile import StyleMeta, read_meta
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
    relu1_2: float = float("nan")  # the style distance per layer (style is their mean)
    relu2_2: float = float("nan")
    relu3_3: float = float("nan")
    relu4_3: float = float("nan")
    weave: float = float("nan")  # period-2-6-px peakiness against the photo's own (measures/weave.py): ~1 = none added
    fine: float = float("nan")  # energy share at 2-6 px against the style image's
    grid: float = float("nan")  # % of the fine band on the 4-px grid's lines beyond the photo's (measures/weave.py)
    edge: float = float("nan")  # the worst border's texture against the interior's, beyond the photo's (measures/edges.py)
    ripple: float = float("nan")  # % of the fine band in sharp peaks the photo lacks (measures/weave.py ripple_share): 0 = none
    stroke: float = float("nan")  # px: the period of what is painted over the photo (measures/strokes.py)
    paint: float = float("nan")  # 0-1: the painted share of the output's luma variance (measures/strokes.py)


@dataclass
class Entry:
    """One column of the comparison: a model that stylizes, or a folder of another tool's outputs."""

    name: str
    meter: QualityMeter
    weave: WeaveMeter
    stylizer: object = None  # fststyle.infer.stylizer.Stylizer
    outputs: dict | None = None  # photo stem -> output file (existing images)

    def output(self, photo_path: Path, photo: torch.Tensor) -> torch.Tensor | None:
        if self.stylizer is not None:
            return self.stylizer.stylize_tensor(photo)
        found = (self.outputs or {}).get(photo_path.stem)
        if found is None:
            return None
        image = load_image(found).to(photo.device)  # compared at the photo's size
        return F.interpolate(image, size=photo.shape[-2:], mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)


def existing_outputs(spec: str, photos: list[Path], styles: list[str]) -> dict[tuple[str, str], dict[str, Path]]:
    """``NAME=DIR``: DIR's images named ``<photo>_<style>[_variant].ext`` -> {(NAME:<style>[_variant], style): {photo: file}}."""
    name, sep, folder = spec.partition("=")
    if not sep or not name or not folder:
        raise UserError(f"--outputs must be NAME=DIR, got {spec!r}")
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise UserError(f"--outputs {name}: no such folder {folder!r}")
    found: dict[tuple[str, str], dict[str, Path]] = {}
    stems = sorted((p.stem for p in photos), key=len, reverse=True)
    for file in sorted(q for q in root.iterdir() if q.suffix.lower() in IMAGE_EXTENSIONS):
        photo = next((s for s in stems if file.stem.startswith(s + "_")), None)
        rest = file.stem[len(photo) + 1:] if photo else ""
        style = next((s for s in sorted(styles, key=len, reverse=True) if rest == s or rest.startswith(s + "_")), None)
        if photo and style:
            found.setdefault((f"{name}:{rest}", style), {})[photo] = file
    if not found:
        raise UserError(f"--outputs {name}: no file in {folder} is named <photo>_<style>[_variant] for these photos "
                        f"({', '.join(p.stem for p in photos)}) and styles")
    return found


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
    outputs: list[str] = (),
) -> list[Row]:
    """Stylize every photo with every model (and measure existing ``outputs``, ``NAME=DIR``); write
    ``grid.jpg``, ``metrics.csv`` and ``metrics.json`` to ``out``."""
    from fststyle.infer.stylizer import Stylizer

    if not models and not outputs:
        raise UserError("nothing to evaluate: name a MODEL or --outputs NAME=DIR")
    paths = photo_paths(photos)
    network = LossNetwork("vgg16", weights, layers=["relu4_3"]).to(device)
    entries: list[Entry] = []

    def entry(name: str, style_path: Path, **kind) -> Entry:
        image = load_image(style_path, STYLE_SIZE)
        return Entry(name, QualityMeter(network, image), WeaveMeter(image), **kind)

    planned = []  # every model's style image found before any network is loaded or photo stylized
    for spec in models:
        path, name = resolve_model(spec)
        meta = read_meta(path)
        for row in meta.styles or [None]:
            style = row["name"] if row else None
            one = StyleMeta(style=style, style_image=row.get("image") or "", style_sha256=row.get("sha256") or "") if row else meta
            label = f"{name}:{style}" if style else name
            try:
                painting = style_image_of(one, styles_dir, style_image)
            except UserError as e:
                raise UserError(f"{label}: no style image to measure against ({str(e).split(';')[0]}); "
                                f"pass --styles DIR (the paintings as <style>.jpg) or --style-image PATH") from None
            planned.append((label, path, style, painting))
    for label, path, style, painting in planned:
        entries.append(entry(label, painting, stylizer=Stylizer.from_checkpoint(path, device=device, style=style)))
    if outputs:
        if not styles_dir and not style_image:
            raise UserError("--outputs needs --styles DIR (the paintings, <style>.jpg) or --style-image PATH")
        known = [p.stem for p in Path(styles_dir).expanduser().iterdir()] if styles_dir else [Path(style_image).stem]
        for spec in outputs:
            for (name, style), files in existing_outputs(spec, paths, known).items():
                painting = style_image_of(StyleMeta(style=style), styles_dir, style_image)
                entries.append(entry(name, painting, outputs=files))
    rows: list[Row] = []
    cells = []
    for photo_path in paths:
        photo = load_image(photo_path, size).to(device)
        photo_feats = entries[0].meter.features(photo)  # the meters share one network: once per photo
        photo_cpu = photo.cpu()  # the spectral and border measures run on the CPU
        photo_weave, photo_grid, photo_edges = band_stats(photo_cpu)[1], grid_lines(photo_cpu), edge_ratios(photo_cpu)
        row_cells = [(to_pil(photo_cpu), photo_path.name)]
        for e in entries:
            start = time.perf_counter()
            output = e.output(photo_path, photo)
            if output is None:
                continue
            seconds = time.perf_counter() - start if e.stylizer is not None else float("nan")
            feats = e.meter.features(output)
            layers = e.meter.style_layers_from(feats)[0].tolist()
            output_cpu = output.cpu()
            share, peaks = band_stats(output_cpu)  # one spectrum serves both weave numbers
            row = Row(e.name, photo_path.name, sum(layers) / len(layers), e.meter.content_from(feats, photo_feats).item(),
                      e.meter.style_from(photo_feats).item(), seconds, **dict(zip(STYLE_LAYERS, layers)),
                      weave=peaks / photo_weave, fine=share / max(e.weave.style_share, 1e-20), grid=grid_added(output_cpu, photo_grid),
                      edge=edge_stripes(output_cpu, photo_edges), ripple=100 * ripple_share(output_cpu, photo_cpu).item(),
                      stroke=stroke_period(output_cpu, photo_cpu), paint=painted_share(output_cpu, photo_cpu))
            if flicker and e.stylizer is not None:
                row.flicker, row.input_flicker = clip_flicker(e.stylizer, photo_cpu[0], pan)
            rows.append(row)
            row_cells.append((to_pil(output_cpu), f"{e.name}  style {row.style:.3f}  content {row.content:.3f}"))
        cells.append(row_cells)
    if video:
        stylizing = [e for e in entries if e.stylizer is not None]
        rows += video_flicker(Path(video), [e.name for e in stylizing], [e.stylizer for e in stylizing], size)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_image(make_grid(cells, cell), out / "grid.jpg", quality=90)
    summary = means(rows, [e.name for e in entries])
    with atomic_path(out / "metrics.csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(asdict(rows[0])))
        writer.writeheader()
        writer.writerows([asdict(r) for r in rows + summary])
    write_text(out / "metrics.json", json.dumps({"rows": [asdict(r) for r in rows], "mean": [asdict(r) for r in summary]}, indent=2))
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
    keys = ("style", "content", "photo_style", "seconds", "flicker", "input_flicker", *STYLE_LAYERS, "weave", "fine", "grid", "edge", "ripple", "stroke", "paint")
    for name in names:
        mine = [r for r in rows if r.model == name and r.style == r.style]  # photos (a video row has no distances)
        if mine:
            summary.append(Row(name, "(mean)", **{k: sum(getattr(r, k) for r in mine) / len(mine) for k in keys}))
    return summary


def print_table(rows: list[Row], file=None) -> None:
    file = file or sys.stdout
    flicker = any(r.flicker == r.flicker for r in rows)  # not all NaN
    extra = f" {'flicker':>8} {'input':>6}" if flicker else ""
    layers = " ".join(f"{n:>7}" for n in STYLE_LAYERS)
    print(f"{'model':<28} {'photo':<20} {'style':>7} {'content':>8} {layers} {'weave':>6} {'fine':>5} {'grid':>5} {'edge':>5} {'ripple':>6} {'stroke':>6} {'paint':>5} {'photo→style':>12} {'ratio':>6} "
          f"{'s/image':>8}{extra}", file=file)
    for r in rows:
        ratio = r.style / r.photo_style if r.photo_style else float("nan")
        extra = f" {r.flicker:8.2f} {r.input_flicker:6.2f}" if flicker else ""
        layers = " ".join(f"{getattr(r, n):7.3f}" for n in STYLE_LAYERS)
        print(f"{r.model:<28} {r.photo:<20} {r.style:7.3f} {r.content:8.3f} {layers} {r.weave:6.2f} {r.fine:5.2f} {r.grid:5.2f} {r.edge:5.2f} {r.ripple:6.2f} {r.stroke:6.1f} {r.paint:5.2f} {r.photo_style:12.3f} "
              f"{ratio:6.2f} {r.seconds:8.3f}{extra}", file=file)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fststyle.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", help="exported .safetensors, training .ckpt, or a shipped style name")
    parser.add_argument("--outputs", nargs="+", default=[], metavar="NAME=DIR",
                        help="also measure existing images (another tool's), named <photo>_<style>[_variant].ext")
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
            args.flicker, pan, args.video, args.outputs,
        )
        print_table(rows)
        print(f"wrote {Path(args.out) / 'grid.jpg'}, metrics.csv, metrics.json")

    return exit_code(run)


if __name__ == "__main__":
    sys.exit(main())
