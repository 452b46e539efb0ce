"""``python -m fststyle.export CKPT [DIR]``: a training checkpoint's transformer as a style file.

The format itself is :mod:`fststyle.stylefile`'s.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fststyle.errors import exit_code
from fststyle.stylefile import export_transformer, load_network


def export_checkpoint(ckpt: str | Path, export_dir: str | Path) -> Path:
    """Export the transformer of a Lightning training checkpoint as ``<export_dir>/<style>.safetensors``."""
    net, meta = load_network(Path(ckpt))
    style = {"name": meta.style, "image": meta.style_image, "sha256": meta.style_sha256, "styles": meta.styles}
    return export_transformer(net, Path(export_dir) / f"{meta.style or 'style'}.safetensors", style, meta.config, meta.training)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fststyle.export", description=export_checkpoint.__doc__)
    parser.add_argument("ckpt", help="Lightning checkpoint, e.g. outputs/starry_night/checkpoints/last.ckpt")
    parser.add_argument("export_dir", nargs="?", default="exports")
    args = parser.parse_args(argv)
    return exit_code(lambda: print(export_checkpoint(args.ckpt, args.export_dir)))


if __name__ == "__main__":
    sys.exit(main())
