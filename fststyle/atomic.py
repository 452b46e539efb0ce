"""The one writer that puts files into place: every file fststyle writes (style exports, checkpoints, ONNX
caches, outputs, videos, downloads, the precision probe) goes through ``atomic_path``.

A reader, or a second process writing the same file, sees either the old complete file or the new complete
one, never a part: each write goes to a temp file of its own (unique name, same folder, so the rename is
atomic and never a cross-filesystem copy), is fsynced, and is renamed over the destination; on any failure
the temp file is removed. No torch import: the torch-free inference path uses it too.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(path: str | Path, mode: int = 0o644, keep_suffix: bool = True) -> Iterator[Path]:
    """A fresh temp path beside ``path``; whatever the block writes there replaces ``path`` when the block ends
    without an exception. The temp name is ``.NAME.RANDOM.tmp`` plus, with ``keep_suffix``, ``path``'s suffix
    (PIL and PyAV pick the format by it); without, a torn file left by kill -9 never looks like a ``*.ckpt``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = ".tmp" + (path.suffix if keep_suffix else "")
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # mkstemp (and safetensors) create 0600; fststyle's files are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (where the platform allows opening a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
