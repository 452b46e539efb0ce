"""Mistakes the user can fix, and the one convention every command reports them by: one ``error:`` line, exit 2."""
from __future__ import annotations

import os
import sys
from typing import Callable

EXIT_USER_ERROR = 2


class UserError(Exception):
    pass


def exit_code(run: Callable[[], object]) -> int:
    """0 when ``run()`` succeeds; a ``UserError`` becomes one ``error: ...`` line on stderr and 2.

    ``HYDRA_FULL_ERROR=1`` lets it through with its traceback (Hydra's own switch, for every command). A reader
    that left early (``| head``) ends the command quietly, as Python's docs on SIGPIPE advise.
    """
    try:
        run()
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the flush at exit would raise again
        return 1
    except UserError as e:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    return 0


def first_line(error: Exception) -> str:
    """Error messages stay one line: torch's unpickling errors span a dozen."""
    return (str(error).strip().splitlines() or [""])[0][:200]


# Checks of one typed value from a config: each failure is one UserError naming the option.

def whole_number(name: str, value, low: int, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        more = " or null" if allow_none else ""
        raise UserError(f"{name} must be a whole number >= {low}{more}, got {value!r}")
    return value


def number(name: str, value, low: float, high: float) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = float("nan")
    if isinstance(value, bool) or not low <= x <= high:
        raise UserError(f"{name} must be a number between {low:g} and {high:g}, got {value!r}")
    return x


def boolean(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise UserError(f"{name} must be true or false, got {value!r}")
    return value
