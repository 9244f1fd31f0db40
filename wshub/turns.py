"""Work that waits its turn: the steps of letting clients in, run a bounded time per turn of the
event loop.

In a reconnect storm thousands of clients send their upgrade within the same turns of the loop.
Were each handled where its bytes arrive, one turn would admit them all (a third of a millisecond
each), and an event for the clients already connected, read in the same turn, would be delivered
only once every one of them was in: seconds, not milliseconds. Queued here instead, the steps
run in arrival order for at most ``budget`` seconds per turn; then the loop polls its sockets and
runs what came meanwhile (the LISTEN connection's events, deliveries) before the next steps. A
step is a callable that handles its own errors.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable

__all__ = ["TURN_BUDGET", "Turns"]

log = logging.getLogger("wshub")

#: Seconds of steps per turn of the loop: what an event may wait behind them, and short enough
#: that the loop's own work in the turn stays most of it.
TURN_BUDGET = 0.001


class Turns:
    def __init__(self, budget: float = TURN_BUDGET) -> None:
        self.budget = budget
        self._steps: deque[Callable[[], None]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scheduled = False

    def __len__(self) -> int:
        return len(self._steps)

    def add(self, step: Callable[[], None]) -> None:
        """Run ``step`` after those waiting, in this turn of the loop or a later one."""
        self._steps.append(step)
        if not self._scheduled:
            if self._loop is None:
                self._loop = asyncio.get_running_loop()
            self._scheduled = True
            self._loop.call_soon(self._run)

    def _run(self) -> None:
        steps = self._steps
        until = time.perf_counter() + self.budget
        while steps:
            try:
                steps.popleft()()
            except (Exception, asyncio.CancelledError):  # a step's own handling failed: the others go on
                log.exception("a step of letting a client in failed")
            if time.perf_counter() >= until:
                break
        if steps:
            assert self._loop is not None
            self._loop.call_soon(self._run)  # the next turn: after the loop polled its sockets
        else:
            self._scheduled = False
