"""Connections per client address and per user, counted for the per-address and per-user caps,
and the pace of new connections per address.

With one hub process a Counter does (``LocalTally``). With several worker processes on one port
(``HUB_WORKERS``; the kernel spreads connections over them) a client's connections land on any
worker, so each worker must see the others' counts: ``SharedTally`` keeps them in shared memory,
taken and given back under one lock, and every worker checks a cap against the count of all.

Shared memory has a fixed size, so the shared counts are a count-min sketch: each key (an address
or a user id) adds to one cell in each of two rows, picked by a hash keyed with a secret made at
startup (nobody can pick keys that collide on purpose), and its count is the smaller of its two
cells. A count can only be too high, never too low: a cap is never passed. A key is refused early
only when both its cells are shared with other busy keys; with 2 x 131,072 cells for at most tens
of thousands of connections that is rare, and it ends when those connections do.

The pace of new connections is a GCRA (a token bucket kept as one time, the "theoretical arrival
time" past which the address's bucket is full again), in a sketch of its own: each cell holds the
latest such time of the addresses hashed to it, and an address's is the earliest of its two cells.
Like the counts, it can only be too late, never too early: a pace is never passed.
"""

from __future__ import annotations

import ctypes
import hashlib
import multiprocessing
import os
from collections import Counter
from typing import Any, Protocol

__all__ = ["LocalTally", "SharedTally", "Tally"]


class Tally(Protocol):
    def take(self, ip: str, user_id: str | None, max_per_ip: int, max_per_user: int) -> str | None:
        """Count one more connection, or name the cap it would pass ("ip" or "user") and count nothing."""

    def give_back(self, ip: str, user_id: str | None) -> None:
        """Count one connection less."""

    def pace(self, ip: str, now: float, burst: int, interval: float) -> bool:
        """Whether one more connection from this address may start at ``now`` (time.monotonic):
        ``burst`` at once, then one every ``interval`` seconds. A refused one is not counted."""


def _paced(full_at: float, now: float, burst: int, interval: float) -> float | None:
    """The address's new "full again" time if one more connection fits its bucket, else None."""
    full_at = max(full_at, now)
    if full_at - now > (burst - 1) * interval:
        return None
    return full_at + interval


class LocalTally:
    """The counts of this process alone."""

    def __init__(self) -> None:
        self._per_ip: Counter[str] = Counter()
        self._per_user: Counter[str] = Counter()
        #: address -> when its bucket is full again; a full bucket's entry is swept out
        self._full_at: dict[str, float] = {}
        self._sweep_at = 1024

    def take(self, ip: str, user_id: str | None, max_per_ip: int, max_per_user: int) -> str | None:
        if self._per_ip[ip] >= max_per_ip:
            return "ip"
        if user_id is not None and self._per_user[user_id] >= max_per_user:
            return "user"
        self._per_ip[ip] += 1
        if user_id is not None:
            self._per_user[user_id] += 1
        return None

    def give_back(self, ip: str, user_id: str | None) -> None:
        _decrement(self._per_ip, ip)
        if user_id is not None:
            _decrement(self._per_user, user_id)

    def pace(self, ip: str, now: float, burst: int, interval: float) -> bool:
        full_at = _paced(self._full_at.get(ip, now), now, burst, interval)
        if full_at is None:
            return False
        self._full_at[ip] = full_at
        if len(self._full_at) >= self._sweep_at:  # memory bounded by the addresses of the last minutes
            self._full_at = {key: at for key, at in self._full_at.items() if at > now}
            self._sweep_at = max(1024, 2 * len(self._full_at))
        return True


class SharedTally:
    """The counts of every worker, in shared memory; made before the workers start, handed to each."""

    WIDTH = 1 << 17  # cells per row: two rows of 4-byte counts, 1 MiB in all
    PACE_WIDTH = 1 << 16  # cells per row of the pace: two rows of 8-byte times, 1 MiB in all

    def __init__(self, context: Any = None) -> None:
        context = context or multiprocessing.get_context("spawn")
        self._cells = context.RawArray(ctypes.c_int32, 2 * self.WIDTH)
        self._full_at = context.RawArray(ctypes.c_double, 2 * self.PACE_WIDTH)
        self._lock = context.Lock()
        self._secret = os.urandom(16)

    def take(self, ip: str, user_id: str | None, max_per_ip: int, max_per_user: int) -> str | None:
        ip_cells = self._cells_of("ip", ip)
        user_cells = self._cells_of("user", user_id) if user_id is not None else ()
        cells = self._cells
        with self._lock:
            if min(cells[i] for i in ip_cells) >= max_per_ip:
                return "ip"
            if user_cells and min(cells[i] for i in user_cells) >= max_per_user:
                return "user"
            for i in (*ip_cells, *user_cells):
                cells[i] += 1
        return None

    def give_back(self, ip: str, user_id: str | None) -> None:
        taken = self._cells_of("ip", ip) + (self._cells_of("user", user_id) if user_id is not None else ())
        cells = self._cells
        with self._lock:
            for i in taken:
                cells[i] -= 1

    def pace(self, ip: str, now: float, burst: int, interval: float) -> bool:
        cells = self._cells_of("pace", ip, self.PACE_WIDTH)
        full_at = self._full_at
        with self._lock:
            later = _paced(min(full_at[i] for i in cells), now, burst, interval)
            if later is None:
                return False
            for i in cells:  # a cell keeps the latest time of the addresses that share it
                full_at[i] = max(full_at[i], later)
        return True

    def _cells_of(self, kind: str, key: str, width: int = WIDTH) -> tuple[int, int]:
        digest = hashlib.blake2b(f"{kind}:{key}".encode(), digest_size=8, key=self._secret).digest()
        first, second = int.from_bytes(digest[:4]), int.from_bytes(digest[4:])
        return first % width, width + second % width


def _decrement(counter: Counter[str], key: str) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]
