"""The command-line entry points (``fststyle-train``, ``fststyle-infer``; ``train.py``/``infer.py`` in a
checkout call the same functions) and what they share."""
from __future__ import annotations

import sys

from fststyle.config import choices, config_dir
from fststyle.errors import UserError, exit_code


def check_config_choices(argv: list[str] | None = None) -> None:
    """``group=name`` with no ``conf/<group>/<name>.yaml``: a ``UserError`` listing the choices.

    Hydra says the same over several lines; checked before Hydra composes the config.
    """
    for arg in sys.argv[1:] if argv is None else argv:
        group, sep, value = arg.partition("=")
        if not sep or not group.isidentifier() or not (config_dir() / group).is_dir():
            continue  # not a plain `group=option` override: Hydra handles it
        if any(c in value for c in "()[]{}*$") or not value:
            continue  # sweep syntax or interpolation: leave to Hydra
        available = choices(group)
        unknown = [v for v in value.split(",") if v not in available]
        if unknown:
            raise UserError(f"{group}={unknown[0]}: no such {group}; available: {', '.join(available)}")


def _hydra_main(config_name: str, run):
    import hydra

    @hydra.main(config_path=str(config_dir()), config_name=config_name, version_base="1.3")
    def main(cfg) -> None:
        status = exit_code(lambda: run(cfg))
        if status:
            sys.exit(status)

    status = exit_code(check_config_choices)
    if status:
        sys.exit(status)
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
    sys.argv[1:] = own_painting_overrides(sys.argv[1:])
    _hydra_main("train", _train)


def own_painting_overrides(argv: list[str]) -> list[str]:
    """``style.image=PATH`` with no ``style=``: your own painting, trained with the custom recipe
    (conf/style/custom.yaml), not with the default style's weights, url and checksum."""
    chose_image = any(a.split("=", 1)[0].lstrip("+") == "style.image" for a in argv)
    chose_style = any(a.split("=", 1)[0].lstrip("+~") == "style" for a in argv)
    return ["style=custom", *argv] if chose_image and not chose_style else argv


def infer_main() -> None:
    """``fststyle-infer ckpt=starry_night input=photo.jpg output=out.jpg`` (conf/infer.yaml)."""
    _hydra_main("infer", _infer)
