"""Giving memory back to the system after a burst (glibc's malloc; elsewhere nothing is done).

Two habits of glibc keep a server's memory at its peak long after a burst of large requests,
hostile or not (docs/security.md, "Memory"):

- Its mmap threshold adapts: once a large block (a 16 MiB body, argon2's 19 MiB) is freed, blocks
  up to that size are taken from the heap from then on, and a heap shrinks only from its top, so
  one small object left above them keeps every page below it. A fixed threshold keeps large
  blocks in mmap, where freeing one returns it at once.
- Free pages inside a heap, and in the arena of every thread that ever allocated, stay mapped
  until ``malloc_trim`` hands them back. A burst leaves many; a server at rest trims now and then.

Python's small-object allocator (pymalloc) has one too, which nothing here changes: it carves
objects from 1 MiB arenas and hands an arena back only when every object in it is gone, so the
objects of thousands of connections that came and went leave arenas held by the few that stay.
Run with ``PYTHONMALLOC=malloc``, a process leaves those objects to glibc, whose free pages the
trim below hands back, for more CPU per object (docs/performance.md, "Under attack").

And Python's collector: a closed connection's objects (Sanic's protocol, transport, request and
the buffers they hold) form reference cycles that only a full garbage collection frees, which
runs when enough new objects have been made, and a server at rest after a burst makes few (and
one whose collections tenure their survivors, core/collector.py, never walks them again). So a
server that grew by ``COLLECT_AFTER`` collects everything, frozen objects included, then trims
(``trim_periodically``).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
from collections.abc import Callable

from core.collector import collect_everything

__all__ = ["keep_large_blocks_returnable", "resident", "trim", "trim_periodically", "watches_memory"]

log = logging.getLogger(__name__)

#: mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: fixed instead of growing with the largest block freed. Above a streamed file's blocks (1 MiB
#: chunks, asyncpg's message buffers for them, 256 KB socket reads): at glibc's starting 128 KiB
#: each of those was mapped, faulted in page by page and unmapped again: 8 page faults per 4 KiB
#: transferred, most of the API's CPU for it (docs/performance.md, "Files"). Freed, they
#: stay in the heap, whose free pages the periodic trim hands back; bodies and argon2's 19 MiB
#: are still mapped on their own
MMAP_THRESHOLD = 4 * 1024 * 1024
#: free bytes at the heap's top kept for the next blocks instead of being handed back at once
TRIM_THRESHOLD = 8 * 1024 * 1024
#: seconds between trims of a running server
TRIM_INTERVAL = 10.0
#: growth of the resident set, since the last settled reading, that is worth a full collection
COLLECT_AFTER = 32 * 1024 * 1024
#: the longest wait between collections that free little
MAX_COLLECT_WAIT = 320.0
_PAGE = os.sysconf("SC_PAGE_SIZE")


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


def watches_memory() -> bool:
    """Whether this process can read its resident set (Linux), which ``trim_periodically`` needs."""
    return os.path.exists("/proc/self/statm")


def resident() -> int:
    """This process's resident set, in bytes (Linux)."""
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * _PAGE


async def trim_periodically(interval: float = TRIM_INTERVAL, collect_after: int = COLLECT_AFTER, *,
                            in_use: Callable[[], int] = lambda: 0) -> None:
    """Every ``interval`` seconds until cancelled, a trim, off the event loop (it walks the heap);
    before it, a full collection when the process is ``collect_after`` above the smallest size it
    settled at, not counting ``in_use()``: bytes it is known to hold for live work (the most
    connections a hub has held), which no collection frees. A full collection walks every object
    and stops the event loop meanwhile (a fifth of a second with 10,000 hub connections): it
    should run when there is garbage to find, not because the live work grew. A collection that frees little (the
    memory is in use) doubles the wait before the next one, up to ``MAX_COLLECT_WAIT``; one that
    frees much brings it back to ``interval``, so the garbage a burst leaves is collected soon
    after it, however many collections ran during it. Without glibc the collections still run,
    and nothing is trimmed."""
    if not watches_memory():
        return
    floor = resident()
    wait = next_collection = 0.0
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(interval)
        grown = resident()
        if grown - floor - in_use() >= collect_after and loop.time() >= next_collection:
            collected = collect_everything()
            await asyncio.to_thread(trim)
            settled = resident()
            wait = interval if grown - settled >= collect_after // 2 else min(max(wait, interval) * 2, MAX_COLLECT_WAIT)
            next_collection = loop.time() + wait
            floor = min(floor, settled)
            log.debug("collected %d objects: %.1f MiB freed", collected, (grown - settled) / 2**20)
        else:
            await asyncio.to_thread(trim)
