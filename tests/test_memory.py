"""fststyle.memory: a large freed activation stays in the heap for the next step instead of being unmapped."""
import ctypes
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fststyle.memory import keep_freed_memory

GLIBC = platform.libc_ver()
pytestmark = pytest.mark.skipif(GLIBC[0] != "glibc" or tuple(map(int, GLIBC[1].split(".")[:2])) < (2, 33),
                                reason="glibc's mallopt, and its mallinfo2 (2.33+) to look at the heap")


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def heap_state() -> MallInfo2:
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    return libc.mallinfo2()


def one_step(mb: int = 64) -> tuple[int, int]:
    """(bytes glibc had mapped for the block while it lived, bytes free in the heap after it was freed)."""
    block = torch.ones(mb << 18)  # float32: mb MB, above glibc's largest mmap threshold (32 MB)
    mapped = heap_state().hblkhd
    del block
    return mapped, heap_state().fordblks


def check_kept_memory() -> None:
    mb = 64 << 20
    try:
        assert keep_freed_memory(False)
        mapped, _ = one_step()
        assert mapped >= mb, mapped  # glibc's default: its own mapping, unmapped on free, faulted in again next step
        assert keep_freed_memory(True)
        mapped, free_in_heap = one_step()
        assert mapped < mb, mapped  # from the heap
        assert free_in_heap >= mb, free_in_heap  # and kept there for the next step
    finally:
        keep_freed_memory(False)


def test_kept_memory_stays_in_the_heap():
    """In a fresh process, as training sets it at its start: the heap of the test process depends on every test
    that ran before (a full run once found 8 MB free where a lone run finds the 64)."""
    root = Path(__file__).resolve().parents[1]
    check = subprocess.run([sys.executable, "-c", "from tests.test_memory import check_kept_memory; check_kept_memory()"],
                           cwd=root, capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr[-2000:]
