"""The login_limits table: one token bucket per (scope, key), shared by every API replica.

A bucket is stored as the time at which it is full again (``tat``, the "theoretical arrival
time" of the generic cell rate algorithm): each attempt moves it one period later, and an
attempt is allowed while that leaves it at most ``burst`` periods ahead of now. No row means a
full bucket, so rows whose time has passed are deleted.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

__all__ = ["EPSILON", "prune", "reset", "take", "wait"]

#: a fudge for float seconds that went through PostgreSQL's microseconds
EPSILON = 1e-6


async def take(
    conn: asyncpg.Connection | asyncpg.Pool, keys: Sequence[tuple[str, str]], charges: Sequence[int], *,
    period: float, burst: int
) -> list[float]:
    """Count attempts against every (scope, key) bucket at once, ``charges`` for each (one, or
    more to write back attempts refused from memory, vaultapi.limiter): the backlog of each, in
    seconds, in the order of the keys. Refused attempts count too, which is the backoff; no
    bucket runs further ahead than 2 * burst periods, so no wait exceeds burst + 1 periods."""
    rows = await conn.fetch(
        """
        INSERT INTO login_limits AS l (scope, key, tat)
        SELECT scope, key, now() + least(charges, 2 * $5::integer) * $4::float8 * interval '1 second'
          FROM unnest($1::text[], $2::text[], $3::integer[]) AS k (scope, key, charges)
         -- one lock order for every statement: two of them never wait on each other in a cycle
         ORDER BY scope, key
        ON CONFLICT (scope, key) DO UPDATE
           SET tat = least(greatest(l.tat, now()) + (excluded.tat - now()),
                           now() + 2 * $5::integer * $4::float8 * interval '1 second')
        RETURNING scope, key, extract(epoch FROM tat - now())::float8 AS backlog
        """,
        [scope for scope, _ in keys], [key for _, key in keys], list(charges), period, burst,
    )
    backlogs = {(row["scope"], row["key"]): row["backlog"] for row in rows}
    return [backlogs[scope, key] for scope, key in keys]


def wait(backlogs: Sequence[float], *, period: float, burst: int) -> float:
    """0 when an attempt that left these backlogs was allowed, else the seconds until the next
    attempt would be."""
    backlog = max(backlogs)
    if backlog <= burst * period + EPSILON:
        return 0.0
    return backlog - (burst - 1) * period


async def reset(conn: asyncpg.Connection | asyncpg.Pool, scope: str, key: str) -> None:
    await conn.execute("DELETE FROM login_limits WHERE scope = $1 AND key = $2", scope, key)


async def prune(conn: asyncpg.Connection | asyncpg.Pool) -> None:
    """Forget the buckets that are full again: they hold nothing a missing row does not."""
    await conn.execute("DELETE FROM login_limits WHERE tat <= now()")
