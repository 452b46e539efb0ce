"""Style images: a local path, or a URL downloaded once into the cache and checked by sha256."""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import torch

from fststyle.atomic import atomic_path
from fststyle.cache import cache_dir, sha256_of
from fststyle.errors import UserError
from fststyle.images import load_image


def is_url(s: str) -> bool:
    return urlparse(str(s)).scheme in ("http", "https")


def absolute_image(image: str) -> str:
    """A local style image by its absolute path (symlinks kept), so an export's metadata finds it from any folder."""
    return str(image) if is_url(image) else os.path.abspath(Path(str(image)).expanduser())


def resolve_image(image: str, sha256: str | None = None) -> Path:
    """A local file as is; a URL fetched into ``<cache>/styles/`` (once) and verified."""
    if not is_url(image):
        path = Path(image).expanduser()
        if not path.is_file():
            raise UserError(f"style.image: no such file {str(path)!r}")
        return path
    dest = cache_dir() / "styles" / Path(urlparse(image).path).name
    if dest.is_file() and (sha256 is None or sha256_of(dest) == sha256):
        return dest
    with atomic_path(dest) as tmp:  # DDP ranks may fetch the same style at once
        try:
            torch.hub.download_url_to_file(image, str(tmp), progress=True)
        except Exception as e:  # noqa: BLE001 - network errors come in many classes
            raise UserError(
                f"could not download style image {image} ({e.__class__.__name__}: {e}); "
                "pass a local file with style.image=PATH (style=multi: style.images=[PATH,...])"
            ) from None
        if sha256 is not None and (got := sha256_of(tmp)) != sha256:
            raise UserError(f"style image {image} has sha256 {got}, expected {sha256}")
    return dest


def checksum_for(style) -> str | None:
    """A style config's sha256 belongs to its own download (``url``), never to a user's ``style.image``."""
    return style.get("sha256") if style.get("url") is None or style.get("image") == style.get("url") else None


def load_style(image: str, sha256: str | None = None, size: int | None = None) -> torch.Tensor:
    return load_image(resolve_image(image, sha256), size)

