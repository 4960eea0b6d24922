"""The C allocator set so that the memory of answers is given back once freed.

glibc serves a block of M_MMAP_THRESHOLD (128 KiB) or more with a mapping of
its own, unmapped when freed; but when such a block is freed it raises the
threshold to the block's size (up to 32 MiB), so that every later block of that
size comes from the heap, and a freed heap is kept. A list answer is one such
block (a 1,000-order page is 250 KiB, and aiohttp joins it with its headers in
another), so 400 clients that do not take their answers left the process 100
MiB larger after they had gone, for good (measured in docs/security-limits.md).
Setting the threshold fixes it, which turns the raise off: each large answer
is mapped, and unmapped once sent or dropped.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from typing import Final

log = logging.getLogger(__name__)

# mallopt's parameter number (malloc.h) and glibc's own default threshold.
M_MMAP_THRESHOLD: Final = -3
MMAP_THRESHOLD_BYTES: Final = 128 * 1024


def map_large_blocks() -> bool:
    """Fix glibc's mmap threshold at its default; False (nothing done) on
    another C library (musl, macOS's): theirs raise no such threshold."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.gnu_get_libc_version  # noqa: B018 (only glibc has it)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    if mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) != 1:
        log.warning("could not fix the C allocator's mmap threshold")
        return False
    return True
