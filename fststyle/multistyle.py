"""Choosing and blending the styles of a multi-style file (conditional instance norm, fststyle/nets/transformer.py).

Torch-free: ``infer.py`` asks a file which styles it carries before deciding whether to import PyTorch.
"""
from __future__ import annotations

import json
from pathlib import Path

from fststyle.errors import UserError


def read_metadata(path: str | Path) -> dict[str, str]:
    """A safetensors file's metadata from its JSON header alone: no tensors read, no torch import."""
    with open(path, "rb") as f:
        header = f.read(8)
        size = int.from_bytes(header, "little") if len(header) == 8 else 0
        if not 0 < size < 100_000_000:
            return {}
        try:
            return dict(json.loads(f.read(size)).get("__metadata__") or {})
        except (ValueError, UnicodeDecodeError):
            return {}


def style_names(meta: dict) -> list[str]:
    """The styles of a multi-style file, in the order of its norm tables ([] for a one-style file)."""
    styles = meta.get("styles") or "[]"
    return [s["name"] for s in (json.loads(styles) if isinstance(styles, str) else styles)]


def style_mix(selection: str | dict, names: list[str], source: str | Path = "ckpt") -> tuple[list[float], str]:
    """(weights over ``names``, label) of ``style=NAME`` or ``style_mix={NAME: WEIGHT, ...}`` (weights scaled to sum 1)."""
    chosen = {str(selection): 1.0} if isinstance(selection, str) else {str(k): v for k, v in dict(selection).items()}
    unknown = [n for n in chosen if n not in names]
    if unknown:
        raise UserError(f"{source} has no style {unknown[0]!r}; its styles: {', '.join(names)}")
    try:
        weights = {n: float(w) for n, w in chosen.items()}
    except (TypeError, ValueError):
        raise UserError(f"style_mix weights must be numbers, got {chosen}") from None
    total = sum(weights.values())
    if not chosen or any(w < 0 for w in weights.values()) or total <= 0:
        raise UserError(f"style_mix needs weights >= 0 with a positive sum, got {chosen}")
    label = next(iter(weights)) if len(weights) == 1 else "+".join(f"{n}{w / total:.2g}" for n, w in weights.items())
    return [weights.get(n, 0.0) / total for n in names], label
