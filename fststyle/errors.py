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

    ``HYDRA_FULL_ERROR=1`` lets it through with its traceback (Hydra's own switch, for every command).
    """
    try:
        run()
    except UserError as e:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    return 0


def first_line(error: Exception) -> str:
    """Error messages stay one line: torch's unpickling errors span a dozen."""
    return (str(error).strip().splitlines() or [""])[0][:200]
