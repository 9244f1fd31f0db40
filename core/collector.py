"""Garbage collection with short pauses for a server that holds many long-lived objects.

CPython's collector walks every object of a generation each time it collects it, with the event
loop stopped. A hub with 10,000 open connections holds a few hundred thousand tracked objects that
live as long as their connection and are freed by reference counting when it closes; collections
that walked them again and again stopped the loop for 20–70 ms (young generation, threshold 50,000)
and 35–200 ms (full) while events waited (docs/performance.md, "Pauses").

So here every collection ends by moving what survived it to the permanent generation
(``gc.freeze``): an object that lived through one collection is never walked again by the
automatic collector, and no pause walks more than the objects made since the last one. Those are
bounded twice: by count (``YOUNG_OBJECTS``), and by time (``collect_young_periodically``), because
the collector's count is of allocations less deallocations, tenured objects' included: while
connections close and others open, as in a reconnect storm, new objects piled up uncounted, and
the collection that came at last walked 200,000 of them (68 ms).

Reference counting still frees a tenured object as soon as the last reference goes; what it
cannot free, cyclic garbage that happened to be alive at a collection, stays until
``collect_everything``, which the memory upkeep runs when the process has grown past what its live
work accounts for (core/allocator.py): so survivors are tenured only where that upkeep runs, and
tenured garbage takes at most its threshold.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from typing import Any

__all__ = [
    "YOUNG_INTERVAL", "YOUNG_INTERVAL_IDLE", "YOUNG_OBJECTS",
    "collect_everything", "collect_young_periodically", "tenure_survivors",
]

#: new objects (allocations less deallocations) that start a collection; each walks about as many
YOUNG_OBJECTS = 2_000
#: seconds between young collections however the count goes: what a loop allocates and keeps in
#: that time is walked in well under a millisecond
YOUNG_INTERVAL = 0.02
#: a collection this quick found next to nothing: the next one may wait twice as long, up to
#: ``YOUNG_INTERVAL_IDLE``, so that an idle server wakes a few times a second, not fifty
QUICK_COLLECTION = 0.0002
YOUNG_INTERVAL_IDLE = 0.16


def _tenure(phase: str, info: dict[str, Any]) -> None:
    if phase == "stop":
        gc.freeze()


def tenure_survivors(young: int = YOUNG_OBJECTS) -> Callable[[], None]:
    """From now on in this process, survivors of a collection are never walked again; returns what
    undoes it (thresholds, callback, frozen objects)."""
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(young, 10, 10)  # the older generations are always empty: frozen
    gc.callbacks.append(_tenure)

    def undo() -> None:
        gc.callbacks.remove(_tenure)
        gc.set_threshold(*thresholds)
        gc.unfreeze()

    return undo


async def collect_young_periodically(interval: float = YOUNG_INTERVAL, idle: float = YOUNG_INTERVAL_IDLE) -> None:
    """Where survivors are tenured, a young collection every ``interval`` seconds, or up to ``idle``
    while they find nothing, until cancelled; elsewhere nothing (the collector's own thresholds
    hold there)."""
    if _tenure not in gc.callbacks:
        return
    wait = interval
    while True:
        await asyncio.sleep(wait)
        started = time.perf_counter()
        gc.collect(0)
        wait = min(wait * 2, idle) if time.perf_counter() - started < QUICK_COLLECTION else interval


def collect_everything() -> int:
    """A full collection; where survivors are tenured, of the frozen objects too: the one pause
    that finds cyclic garbage among them (its callback freezes what survives again). Objects the
    process froze itself (the API's startup) stay frozen. Returns the number found unreachable."""
    if _tenure in gc.callbacks:
        gc.unfreeze()
    return gc.collect()
