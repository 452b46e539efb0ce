"""The config home: where conf/ lives, the resolvers it uses, and the one reader of its style catalogue.

The CLI imports this module, never the reverse; library modules receive plain values from the entry layer.
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from omegaconf import OmegaConf

from fststyle.errors import UserError

NOT_STYLES = ("multi", "custom")  # conf/style/ entries that are not paintings of their own


def config_dir() -> Path:
    """conf/: inside the installed package (the wheel maps the repository's conf/ there), else the checkout's."""
    packaged = Path(__file__).resolve().parent / "conf"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[1] / "conf"


def choices(group: str) -> list[str]:
    """The options of a config group (``conf/<group>/*.yaml``)."""
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))


def style_catalogue() -> list[str]:
    """The paintings conf/style/ knows by name."""
    return [name for name in choices("style") if name not in NOT_STYLES]


def style_entry(name: str, image: str | None = None) -> dict:
    """``conf/style/<name>.yaml`` resolved (url, image, sha256, size, weight, layers); ``image`` replaces its picture.

    A name without an entry (or ``custom``) is the custom recipe with that name.
    """
    path = config_dir() / "style" / f"{name}.yaml"
    if name in NOT_STYLES or not path.is_file():
        path = config_dir() / "style" / "custom.yaml"
    entry = OmegaConf.load(path)
    entry = entry.style if "style" in entry else entry  # a file that also sets loss options keeps style.* under style
    if image is not None:
        entry.image = str(image)
    entry.name = name
    return OmegaConf.to_container(entry, resolve=True)


def style_name(default: str, *, _parent_) -> str:
    """``style.name`` of a style config: its own name for its own picture, else the stem of ``style.image``.

    ``style.image=my_painting.jpg`` trains "my_painting" (run folder, export, metadata); ``style.name=X``
    replaces this resolver altogether. The image is read uninterpolated: ``style.image=DIR/${style.name}.jpg``
    (one image per style of a multirun) refers to the name, so it keeps the default.
    """
    raw = _parent_._get_node("image")._value()
    if not isinstance(raw, str) or "${" in raw or raw == _parent_.get("url"):
        return default
    return Path(urlparse(raw).path).stem or default


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("style_name"):
        OmegaConf.register_new_resolver("style_name", style_name)


def expand_styles(style: dict) -> dict:
    """A multi-style config (conf/style/multi.yaml) with ``styles``: one entry per name of ``style.names``,
    each its ``conf/style/<name>.yaml`` (image, sha256, size, weight), ``style.images`` replacing the images
    and a non-null ``style.size``/``style.weight`` replacing every style's."""
    from fststyle.style import checksum_for

    names = [str(n) for n in style.get("names") or []]
    images = style.get("images")
    if not names:
        raise UserError("style=multi needs style.names=[NAME,...]: the conf/style/ entries to train together")
    if len(set(names)) != len(names):
        raise UserError(f"style.names lists a style twice: {names}")
    if images is not None and len(images) != len(names):
        raise UserError(f"style.images has {len(images)} images for {len(names)} style.names")
    known = style_catalogue()
    styles = []
    for i, name in enumerate(names):
        if name not in known and images is None:
            raise UserError(f"style.names: no style {name!r} (available: {', '.join(known)}); "
                            "a picture of your own needs style.images=[...] too")
        entry = style_entry(name, None if images is None else images[i])
        entry["sha256"] = checksum_for(entry)
        for key in ("size", "weight"):
            if style.get(key) is not None:
                entry[key] = style[key]
        styles.append({k: entry.get(k) for k in ("name", "image", "sha256", "size", "weight")})
    return {**style, "styles": styles}
