"""The command-line entry points (``fststyle-train``, ``fststyle-infer``; ``train.py``/``infer.py`` in a
checkout call the same functions) and what they share."""
from __future__ import annotations

import sys

from fststyle.config import choices, config_dir
from fststyle.errors import UserError, exit_code, first_line


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


# Hydra's flags whose next word is their value, not an override
FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd",
                    "--info", "-i", "--experimental-rerun"}
# Options people reach for that live elsewhere in fststyle's config.
ELSEWHERE = {"loss.style_weight": "style.weight", "style.style_weight": "style.weight", "loss.style_size": "style.size",
             "trainer.lr": "optim.lr", "lr": "optim.lr", "max_steps": "trainer.max_steps", "batch_size": "data.batch_size"}


def check_overrides(config_name: str, argv: list[str] | None = None) -> None:
    """Every ``key=value`` parsed and composed before Hydra runs, so a typo or a grammar slip is one ``UserError``
    (with the closest existing option) instead of Hydra's several lines. Sweeps and ``hydra.*`` are left to Hydra."""
    import difflib

    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import ConfigCompositionException, OverrideParseException
    from omegaconf import OmegaConf

    parser = OverridesParser.create()
    plain = []
    args = list(sys.argv[1:] if argv is None else argv)
    for i, arg in enumerate(args):
        if arg.startswith("-") or (i and args[i - 1] in FLAGS_WITH_VALUE):
            continue  # --multirun, --help, --cfg job ...: Hydra's own flags and their values
        try:
            override = parser.parse_overrides([arg])[0]
        except OverrideParseException as e:
            raise UserError(f"{arg}: not a valid option ({first_line(e)}); a mapping or list goes in quotes, "
                            'e.g. style_mix="{starry_night: 0.7, wave: 0.3}"') from None
        if not override.is_sweep_override() and not override.key_or_group.startswith("hydra"):
            plain.append((arg, override))
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        try:
            compose(config_name, overrides=[arg for arg, _ in plain])
            return
        except ConfigCompositionException:
            pass
        for arg, override in plain:  # which one: each alone on the config the group choices make
            groups = [a for a, o in plain if o is not override and "." not in o.key_or_group and not o.is_add()]
            try:
                compose(config_name, overrides=groups + [arg])
            except ConfigCompositionException:
                key = override.key_or_group
                try:
                    base = compose(config_name, overrides=groups)
                except ConfigCompositionException:
                    base = None
                parent, _, leaf = key.rpartition(".")
                node = (OmegaConf.select(base, parent) if parent else base) if base is not None else None
                known = list(node.keys()) if OmegaConf.is_dict(node) else []
                close = ELSEWHERE.get(key) or next(iter(f"{parent + '.' if parent else ''}{m}"
                                                        for m in difflib.get_close_matches(leaf, known, n=1)), None)
                hint = f"did you mean {close}?" if close else f"a new key is added with +{arg}"
                raise UserError(f"{key}: no such option in this config; {hint}") from None
        try:  # no single option is to blame: the composition's own first line
            compose(config_name, overrides=[arg for arg, _ in plain])
        except ConfigCompositionException as e:
            raise UserError(first_line(e)) from None


def _hydra_main(config_name: str, run):
    import hydra

    @hydra.main(config_path=str(config_dir()), config_name=config_name, version_base="1.3")
    def main(cfg) -> None:
        status = exit_code(lambda: run(cfg))
        if status:
            sys.exit(status)

    status = exit_code(check_config_choices) or exit_code(lambda: check_overrides(config_name))
    if status:
        sys.exit(status)
    main()


def _train(cfg) -> None:
    from fststyle.train.run import remove_failed_start, train

    try:
        path = train(cfg)
    except UserError:
        remove_failed_start()
        raise
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
