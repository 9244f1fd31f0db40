"""The login_limits table: one token bucket per (scope, key), shared by every API replica.

A bucket is stored as the time at which it is full again (``tat``, the "theoretical arrival
time" of the generic cell rate algorithm): each attempt moves it one period later, and an
attempt is allowed while that leaves it at most ``burst`` periods ahead of now. No row means a
full bucket, so rows whose time has passed are deleted.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

__all__ = ["prune", "reset", "take"]

# A fudge for float seconds that went through PostgreSQL's microseconds.
_EPSILON = 1e-6


async def take(
    conn: asyncpg.Connection | asyncpg.Pool, keys: Sequence[tuple[str, str]], *, period: float, burst: int
) -> float:
    """Count one attempt against every (scope, key) bucket at once: 0 when allowed, else the
    seconds until the next attempt would be. Refused attempts count too, which is the backoff;
    no bucket runs further ahead than 2 * burst periods, so no wait exceeds burst + 1 periods."""
    rows = await conn.fetch(
        """
        INSERT INTO login_limits AS l (scope, key, tat)
        SELECT scope, key, now() + $3::float8 * interval '1 second'
          FROM unnest($1::text[], $2::text[]) AS k (scope, key)
         -- one lock order for every statement: two of them never wait on each other in a cycle
         ORDER BY scope, key
        ON CONFLICT (scope, key) DO UPDATE
           SET tat = least(greatest(l.tat, now()) + $3::float8 * interval '1 second',
                           now() + 2 * $4::integer * $3::float8 * interval '1 second')
        RETURNING extract(epoch FROM tat - now())::float8 AS backlog
        """,
        [scope for scope, _ in keys], [key for _, key in keys], period, burst,
    )
    backlogs = [row["backlog"] for row in rows]
    if min(backlogs) <= period + _EPSILON:
        # a bucket that starts full is a new (or forgotten) key: the moment to bound the table
        await prune(conn)
    backlog = max(backlogs)
    if backlog <= burst * period + _EPSILON:
        return 0.0
    return backlog - (burst - 1) * period


async def reset(conn: asyncpg.Connection | asyncpg.Pool, scope: str, key: str) -> None:
    await conn.execute("DELETE FROM login_limits WHERE scope = $1 AND key = $2", scope, key)


async def prune(conn: asyncpg.Connection | asyncpg.Pool) -> None:
    """Forget the buckets that are full again: they hold nothing a missing row does not."""
    await conn.execute("DELETE FROM login_limits WHERE tat <= now()")
