"""The styles that ship with fststyle: ``fststyle/zoo/<name>.safetensors``, usable by name.

``python infer.py ckpt=starry_night`` finds the file here; ``ckpt=list`` prints the names.
How each was trained is in its metadata (``python -m fststyle.zoo``; every run of one: ``python -m fststyle.zoo NAME``) and
docs/QUALITY.md.
"""
from __future__ import annotations

import sys
from pathlib import Path

from fststyle.errors import UserError, exit_code

ZOO_DIR = Path(__file__).parent / "zoo"


def names() -> list[str]:
    return sorted(p.stem for p in ZOO_DIR.glob("*.safetensors"))


def resolve_model(spec: str) -> tuple[Path, str]:
    """(file, label) of a model: ``LABEL=PATH``, a path to a style file or checkpoint, or a shipped style's name."""
    label, sep, rest = str(spec).partition("=")
    if sep and label and "/" not in label:
        return resolve_model(rest)[0], label
    path = Path(spec).expanduser()
    if path.is_file():  # labelled by file name; a checkpoint by its run folder too (runs/a/checkpoints/last.ckpt: a/last)
        return path, path.stem if path.suffix != ".ckpt" else f"{path.parent.parent.name}/{path.stem}"
    if (ZOO_DIR / f"{spec}.safetensors").is_file():
        return ZOO_DIR / f"{spec}.safetensors", str(spec)
    looks_like_a_path = "/" in str(spec) or path.suffix in (".safetensors", ".ckpt", ".onnx")
    shipped = ", ".join(names()) or "none"
    if looks_like_a_path:
        raise UserError(f"ckpt: no such file {str(spec)!r} (shipped styles, usable by name: {shipped})")
    raise UserError(f"ckpt: {str(spec)!r} is neither a file nor a shipped style; shipped styles: {shipped}")


def describe() -> list[dict]:
    """Each shipped style's metadata, for ``ckpt=list`` and ``python -m fststyle.zoo``."""
    from fststyle.stylefile import read_meta  # the header alone: ckpt=list needs no torch

    rows = []
    for name in names():
        meta = read_meta(ZOO_DIR / f"{name}.safetensors")
        rows.append({"name": name, "recipe": recipe(meta.config), **meta.training, "fststyle": meta.fststyle_version})
    return rows


FINE_TUNED = "; fine-tuned from a "  # what ``recipe`` puts before the nested line of the network a run started from


def recipe(config: dict) -> str:
    """The settings that decide a style's look, from a training config."""
    loss, style, optim = config.get("loss", {}), config.get("style", {}), config.get("optim", {})
    stability = f", stability_weight {loss['stability_weight']:g}" if loss.get("stability_weight") else ""
    scales = style.get("layers") or {}
    layers = {k: w * scales.get(k, 1.0) for k, w in loss.get("style_layers", {}).items()}
    scaled = "".join(f", {k} x{w:g}" for k, w in layers.items() if w != 1)
    balance = f", balance {style['balance']}" if style.get("balance", "johnson") != "johnson" else ""
    lattice = f", lattice_weight {loss['lattice_weight']:g}" if loss.get("lattice_weight") else ""
    lattice += " tapered" if lattice and loss.get("lattice_taper") else ""
    coarse = f", coarse_style_weight {loss['coarse_style_weight']:g}" if loss.get("coarse_style_weight") else ""
    ripple = f", ripple_weight {loss['ripple_weight']:g} (peak {loss.get('ripple_peak', 100):g})" if loss.get("ripple_weight") else ""
    border = f", border_reflect {loss['border_reflect']}" if loss.get("border_reflect") else ""
    spectrum = f", spectrum_weight {loss['spectrum_weight']:g}" if loss.get("spectrum_weight") else ""
    teacher = f", distilled from {config['teacher']} (distill_weight {loss.get('distill_weight', 0):g}{spectrum})" if config.get("teacher") else ""
    start = config.get("init_from_record")
    start = f"{FINE_TUNED}{start.get('steps')}-step network ({start.get('recipe')})" if start else ""
    content = " + ".join(name + (f" x{w:g}" if w != 1 else "") for name, w in loss.get("content_layers", {}).items())
    return (f"content {content}, style.weight {style.get('weight')}{balance}, "
            f"style.size {style.get('size')}{scaled}, lr {optim.get('lr')} {optim.get('schedule', 'constant')}{stability}{lattice}{coarse}{ripple}{border}"
            f"{teacher}{start}")


def lineage(line: str) -> list[str]:
    """A recipe line split into its runs, newest first: each fine-tune's recipe nests the whole line of the network
    it started from (``recipe``), ten levels deep for a twin tuned as often as udnie_lite."""
    runs = []
    while FINE_TUNED in line:
        head, rest = line.split(FINE_TUNED, 1)
        steps, inner = rest.split("-step network (", 1)
        runs.append(f"{head}{FINE_TUNED}{steps}-step network")
        line = inner[:-1]  # the closing parenthesis
    return [*runs, line]


def add(src: str | Path, name: str | None = None) -> Path:
    """Ship a trained export: an fp16 copy in ``ZOO_DIR`` (half the size), its metadata kept; ``name`` ships it
    under another name than its style's (a variant, e.g. ``starry_night_stable``).

    A style image given as a local path (training offline) is recorded as the style config's public URL
    and checksum instead, so the evaluator can find it on any machine.
    """
    from fststyle.stylefile import export_transformer, load_network

    net, meta = load_network(src)
    style = public({"name": meta.style, "image": meta.style_image, "sha256": meta.style_sha256})
    style["name"] = name or style["name"]
    if meta.styles:  # a multi-style file: each of its styles, in order
        style["styles"] = [public(s) for s in meta.styles]
    return export_transformer(net, ZOO_DIR / f"{style['name']}.safetensors", style, meta.config, meta.training, half=True)


def public(style: dict) -> dict:
    """A style whose conf/style/ entry exists, with that entry's URL and checksum instead of a local path; found
    by name, or by the image's checksum for a variant trained under another name (``style.name=starry_night_stable``)."""
    from fststyle.config import style_catalogue, style_entry

    names = [style["name"]] if style["name"] in style_catalogue() else style_catalogue()
    for name in names:
        known = style_entry(name)
        if name == style["name"] or (style.get("sha256") and known.get("sha256") == style["sha256"]):
            return {**style, "image": known["url"], "sha256": known.get("sha256") or ""}
    return style


def gallery(out: str | Path, photos: list[str], cell: int = 300) -> Path:
    """README's gallery: a row per shipped style, each photo in that style (the first cell names the style),
    columns aligned, each cell ``cell`` px high and at most ``cell * 4 / 3`` wide."""
    from PIL import Image, ImageDraw

    from fststyle.images import load_image, save_image, to_pil
    from fststyle.infer.stylizer import Stylizer

    width = cell * 4 // 3
    shots = [load_image(p, 512) for p in photos]

    def placed(image: Image.Image, label: str) -> Image.Image:
        image = image.copy()
        image.thumbnail((width, cell), Image.Resampling.LANCZOS)
        tile = Image.new("RGB", (width, cell), "white")
        tile.paste(image, ((width - image.width) // 2, (cell - image.height) // 2))
        draw = ImageDraw.Draw(tile)
        box = draw.textbbox((6, 6), label)
        draw.rectangle((box[0] - 3, box[1] - 3, box[2] + 3, box[3] + 3), fill=(0, 0, 0))
        draw.text((6, 6), label, fill=(255, 255, 255))
        return tile

    rows = []
    for name in names():
        stylizer = Stylizer.from_checkpoint(ZOO_DIR / f"{name}.safetensors")
        row = [placed(to_pil(stylizer.stylize_tensor(shot)), f"{name} ({Path(photo).stem})") for shot, photo in zip(shots, photos)]
        rows.append(row)
    grid = Image.new("RGB", (len(rows[0]) * (width + 4) - 4, len(rows) * (cell + 4) - 4), "white")
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            grid.paste(tile, (c * (width + 4), r * (cell + 4)))
    save_image(grid, out, quality=88)
    return Path(out)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    return exit_code(lambda: _main(argv))


def _main(argv: list[str]) -> int:
    if argv[:1] == ["gallery"]:  # gallery OUT.jpg PHOTO [PHOTO ...]
        if len(argv) < 3:
            raise UserError("usage: python -m fststyle.zoo gallery OUT.jpg PHOTO [PHOTO ...]")
        print(f"wrote {gallery(argv[1], argv[2:])}")
        return 0
    if argv[:1] == ["add"]:  # add EXPORT [EXPORT ...] | add EXPORT --name NAME
        if "--name" in argv:
            i = argv.index("--name")
            print(f"shipped {add(argv[1], argv[i + 1])}")
            return 0
        for src in argv[1:]:
            print(f"shipped {add(src)}")
        return 0
    rows = describe()
    if argv:  # NAME [NAME ...]: every run of each, newest first
        unknown = [name for name in argv if name not in {row["name"] for row in rows}]
        if unknown:
            raise UserError(f"no shipped style {unknown[0]!r}; shipped: {', '.join(row['name'] for row in rows)}")
        for row in (row for row in rows if row["name"] in argv):
            print(f"{row['name']}: {provenance(row)}; fststyle {row.get('fststyle')}")
            for i, run in enumerate(lineage(row["recipe"]), 1):
                print(f"  {i}. {run}")
        return 0
    for row in rows:
        runs = lineage(row["recipe"])
        count = len(runs) - 1
        earlier = f" ({count} earlier run{'s' * (count > 1)}: python -m fststyle.zoo {row['name']})" if count else ""
        print(f"{row['name']}: {runs[0]}{earlier}; {provenance(row)}; fststyle {row.get('fststyle')}")
    return 0


def provenance(row: dict) -> str:
    """How long and where a model trained, leaving out what its record does not say (an export of a
    checkpoint written before checkpoints carried the record knows only its step, image size and data)."""
    def known(key: str) -> bool:
        return row.get(key) is not None

    resumed = row.get("resumed_at_step")  # the wall time covers only the steps after the last resume
    parts = [f"{row.get('steps')} steps" + (f" x batch {row['batch']}" if known("batch") else "")
             + (f" at {row['image_size']} px" if known("image_size") else "") + (f" on {row['data']}" if known("data") else "")]
    if known("precision"):
        parts.append(str(row["precision"]))
    if known("wall_time_s"):
        parts.append(f"{row['wall_time_s']} s" + (f" for steps {resumed}-{row.get('steps')}" if resumed else "")
                     + (f" on {row['machine']}" if known("machine") else ""))
    return ", ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
