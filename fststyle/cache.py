"""Where downloads and derived files live, and how they are checked. No torch import: infer.py's
OpenVINO and onnxruntime paths use this too."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path


def cache_dir() -> Path:
    """Where downloads live: $FSSTYLE_CACHE, else ~/.cache/fststyle."""
    return Path(os.environ.get("FSSTYLE_CACHE", Path.home() / ".cache" / "fststyle")).expanduser()


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
