"""The command-line entry points (``fststyle-train``, ``fststyle-infer``; ``train.py``/``infer.py`` in a
checkout call the same functions) and what they share."""
from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

from fststyle.errors import UserError


def report_user_errors(fn):
    """A ``UserError`` becomes one ``error: ...`` line and exit code 2 (full trace with HYDRA_FULL_ERROR=1)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)

    return wrapper


def check_config_choices(config_dir: str | Path, argv: list[str] | None = None) -> None:
    """``group=name`` with no ``conf/<group>/<name>.yaml``: one line listing the choices, exit 2.

    Hydra says the same over several lines; checked before Hydra composes the config.
    """
    config_dir = Path(config_dir)
    for arg in sys.argv[1:] if argv is None else argv:
        group, sep, value = arg.partition("=")
        if not sep or not group.isidentifier() or not (config_dir / group).is_dir():
            continue  # not a plain `group=option` override: Hydra handles it
        if any(c in value for c in "()[]{}*$") or not value:
            continue  # sweep syntax or interpolation: leave to Hydra
        available = sorted(p.stem for p in (config_dir / group).glob("*.yaml"))
        unknown = [v for v in value.split(",") if v not in available]
        if unknown:
            print(f"error: {group}={unknown[0]}: no such {group}; available: {', '.join(available)}", file=sys.stderr)
            sys.exit(2)


def style_name(default: str, *, _parent_) -> str:
    """``style.name`` of a style config: its own name for its own picture, else the stem of ``style.image``.

    ``style.image=my_painting.jpg`` trains "my_painting" (run folder, export, metadata); ``style.name=X``
    replaces this resolver altogether. The image is read uninterpolated: ``style.image=DIR/${style.name}.jpg``
    (one image per style of a multirun) refers to the name, so it keeps the default.
    """
    raw = _parent_._get_node("image")._value()
    if not isinstance(raw, str) or "${" in raw or raw == _parent_.get("url"):
        return default
    from urllib.parse import urlparse

    return Path(urlparse(raw).path).stem or default


def register_resolvers() -> None:
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("style_name"):
        OmegaConf.register_new_resolver("style_name", style_name)


def config_dir() -> Path:
    """conf/: inside the installed package (the wheel maps the repository's conf/ there), else the checkout's."""
    packaged = Path(__file__).resolve().parent / "conf"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[1] / "conf"


def _hydra_main(config_name: str, run):
    import hydra

    @hydra.main(config_path=str(config_dir()), config_name=config_name, version_base="1.3")
    @report_user_errors
    def main(cfg) -> None:
        run(cfg)

    check_config_choices(config_dir())
    main()


def _train(cfg) -> None:
    from fststyle.train.run import train

    path = train(cfg)
    if path:
        print(f"exported {path}")


def _infer(cfg) -> None:
    from fststyle.infer.run import run

    run(cfg)


def train_main() -> None:
    """``fststyle-train style=starry_night ...`` (conf/train.yaml lists every option)."""
    _hydra_main("train", _train)


def infer_main() -> None:
    """``fststyle-infer ckpt=starry_night input=photo.jpg output=out.jpg`` (conf/infer.yaml)."""
    _hydra_main("infer", _infer)
