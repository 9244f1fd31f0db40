"""Giving memory back to the system after a burst (glibc's malloc; elsewhere nothing is done).

Two habits of glibc keep a server's memory at its peak long after a burst of large requests,
hostile or not (docs/security.md, "Memory"):

- Its mmap threshold adapts: once a large block (a 16 MiB body, argon2's 19 MiB) is freed, blocks
  up to that size are taken from the heap from then on, and a heap shrinks only from its top, so
  one small object left above them keeps every page below it. A fixed threshold keeps large
  blocks in mmap, where freeing one returns it at once.
- Free pages inside a heap, and in the arena of every thread that ever allocated, stay mapped
  until ``malloc_trim`` hands them back. A burst leaves many; a server at rest trims now and then.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging

__all__ = ["keep_large_blocks_returnable", "trim", "trim_periodically"]

log = logging.getLogger(__name__)

#: mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: glibc's own starting values, kept instead of letting them grow with the largest block freed
MMAP_THRESHOLD = 128 * 1024
TRIM_THRESHOLD = 256 * 1024
#: seconds between trims of a running server
TRIM_INTERVAL = 10.0


def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt, libc.malloc_trim  # noqa: B018  (musl and others have neither)
    except (OSError, AttributeError):
        return None
    return libc


_libc = _glibc()


def keep_large_blocks_returnable() -> bool:
    """Fix the mmap and trim thresholds for this process; False where the allocator is not glibc's."""
    if _libc is None:
        return False
    return bool(_libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        _libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def trim() -> None:
    """Hand the free pages of every arena back to the system."""
    if _libc is not None:
        _libc.malloc_trim(0)


async def trim_periodically(interval: float = TRIM_INTERVAL) -> None:
    """Trim every ``interval`` seconds until cancelled, off the event loop (a trim walks the heap)."""
    if _libc is None:
        return
    while True:
        await asyncio.sleep(interval)
        await asyncio.to_thread(trim)
