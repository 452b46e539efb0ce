"""Keep freed memory for the next step instead of handing it back to the operating system.

A training step or an L-BFGS iteration frees and allocates the same activations every time. glibc serves blocks
above its mmap threshold (at most 32 MB) with fresh mappings and unmaps them on free, so every step faults in and
zeroes each of their pages again, and trims the heap it could have reused. With mappings off and trimming off,
the next step reuses the same heap (docs/BENCHMARKS.md: the faults per step and what they cost). The heap then
stays at the loop's peak, or a little above where aligned allocations fragment it; it settles rather than grows
(docs/BENCHMARKS.md has both).
"""
from __future__ import annotations

import ctypes
import platform

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)
KEEP = {M_MMAP_MAX: 0, M_TRIM_THRESHOLD: 2**30}
GLIBC_DEFAULTS = {M_MMAP_MAX: 65536, M_TRIM_THRESHOLD: 128 * 1024}


def _glibc():
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def keep_freed_memory(keep: bool = True) -> bool:
    """Keep freed memory in the heap (``keep``) or go back to glibc's initial settings (its mmap threshold then no
    longer adapts to the program, as it would in a process that never set it); False where this is not glibc."""
    libc = _glibc()
    if libc is None:
        return False
    applied = all(libc.mallopt(option, value) == 1 for option, value in (KEEP if keep else GLIBC_DEFAULTS).items())
    if not keep:
        libc.malloc_trim(0)
    return applied
