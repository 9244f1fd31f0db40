"""How one API process takes from the buckets of login_limits: through the table, except for a
bucket it has just seen empty.

Every API replica counts in the same table, so an allowed attempt is always decided by one
statement there. A refused one need not be: a client that ignores Retry-After (a guesser, or a
script) sends attempt after attempt into a bucket that stays empty for minutes, and writing each
of them is database work for nothing. So a bucket the table called empty is remembered here, and
the attempts that follow are refused from memory, charged to that bucket here (the same backoff:
one period each, up to the same bound), and written back in one charge by the first attempt
that comes a second or more after the bucket was last read. A remembered bucket is thus read
again at most a second late: it never lets an attempt through that the table would refuse, and
it refuses for at most that second an attempt another replica's reset would have let through.

An attempt refused from memory charges only the buckets that refused it. The table's own
statement charges every bucket of the attempt, refused or not; neither gives a guess more.

What a crash loses is the last second's charges of the empty buckets, as the unlogged table
itself loses its rows.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from vaultapi.models import login_limits

__all__ = ["Limiter"]

#: how late a remembered empty bucket may be written back and read again
WRITE_BACK = 1.0
#: empty buckets remembered per process: about 300 bytes each (a key is at most an email's 256
#: characters); the oldest is let go first, and its next attempt goes to the table
REMEMBERED = 4096
#: the table is pruned when a new key arrives, at most this often per process
PRUNE_EVERY = 1.0

Key = tuple[str, str]


@dataclass
class _Empty:
    #: when the bucket is full again, on this process's monotonic clock
    full_at: float
    read_at: float
    #: attempts refused from memory since it was read
    unwritten: int = 0


class Limiter:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._empty: dict[Key, _Empty] = {}
        self._pruned_at = float("-inf")

    async def take(self, keys: Sequence[Key], *, period: float, burst: int) -> float:
        """Count one attempt against every bucket: 0 when allowed, else the seconds until the next
        attempt would be."""
        now = time.monotonic()
        refusing = [empty for key in keys if (empty := self._still_empty(key, now, period, burst))]
        if refusing and all(now - empty.read_at < WRITE_BACK for empty in refusing):
            for empty in refusing:
                empty.full_at = min(max(empty.full_at, now) + period, now + 2 * burst * period)
                empty.unwritten += 1
            return max(empty.full_at for empty in refusing) - now - (burst - 1) * period
        held = {key: self._empty.pop(key) for key in keys if key in self._empty}
        charges = [1 + (held[key].unwritten if key in held else 0) for key in keys]
        try:
            backlogs = await login_limits.take(self._pool, keys, charges, period=period, burst=burst)
        except BaseException:
            for key, empty in held.items():  # their charges go with a later attempt
                self._remember(key, empty)
            raise
        now = time.monotonic()
        for key, backlog in zip(keys, backlogs):
            if backlog > burst * period + login_limits.EPSILON:
                self._remember(key, _Empty(full_at=now + backlog, read_at=now))
        if min(backlogs) <= period + login_limits.EPSILON and now - self._pruned_at >= PRUNE_EVERY:
            # a bucket that starts full is a new (or forgotten) key: the moment to bound the table
            self._pruned_at = now
            await login_limits.prune(self._pool)
        return login_limits.wait(backlogs, period=period, burst=burst)

    async def reset(self, key: Key) -> None:
        """The bucket is full again (a verified password refills its account's)."""
        self._empty.pop(key, None)
        await login_limits.reset(self._pool, *key)

    def _still_empty(self, key: Key, now: float, period: float, burst: int) -> _Empty | None:
        empty = self._empty.get(key)
        if empty is None or empty.full_at - now > burst * period + login_limits.EPSILON:
            return empty
        return None

    def _remember(self, key: Key, empty: _Empty) -> None:
        self._empty.pop(key, None)
        self._empty[key] = empty
        while len(self._empty) > REMEMBERED:
            del self._empty[next(iter(self._empty))]
