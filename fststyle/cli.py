"""Shared bits of the command-line entry points."""
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
