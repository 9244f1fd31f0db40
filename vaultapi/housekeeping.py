"""What the API does on a schedule: Sends past their deletion date go, and so do the files no
row owns any more.

Every replica runs the loop; one at a time does the work, the one holding the PostgreSQL
advisory lock LOCK for the sweep (the others skip that round), so a Send is deleted once, and
its owner's devices hear SyncSendDelete once (the sends trigger publishes it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg

from vaultapi.storage import FileStore

__all__ = ["ABANDONED_AFTER", "INTERVAL", "LOCK", "Swept", "run", "sweep"]

log = logging.getLogger(__name__)

#: seconds between sweeps
INTERVAL = 60.0
#: the advisory lock of the sweep, one number for every replica ('pgwsweep' in ASCII)
LOCK = 0x7067777377656570
#: seconds after which an announced upload that never came, a file held for a share that never
#: came, or a half-written file of a process that died, is removed
ABANDONED_AFTER = 24 * 3600
#: released files removed per sweep (the rest wait for the next)
BATCH = 1000


@dataclass(frozen=True)
class Swept:
    sends: int
    attachments: int
    files: int


async def run(pool: asyncpg.Pool, store: FileStore, interval: float = INTERVAL) -> None:
    """Sweep every interval seconds until cancelled; a failed sweep is logged and tried again."""
    while True:
        try:
            await sweep(pool, store)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("housekeeping sweep failed; trying again in %.0f s", interval)
        await asyncio.sleep(interval)


async def sweep(pool: asyncpg.Pool, store: FileStore) -> Swept | None:
    """One sweep, when no other replica is sweeping; None when one is."""
    async with pool.acquire() as conn, _sweeping(conn) as ours:
        if not ours:
            return None
        sends = await conn.fetch(
            "DELETE FROM sends WHERE deletion_date <= now()"
            " OR (type = 1 AND NOT file_uploaded AND creation_date < now() - make_interval(secs => $1))"
            " RETURNING id", ABANDONED_AFTER)
        attachments = await conn.fetch(
            "DELETE FROM attachments WHERE NOT uploaded AND created_at < now() - make_interval(secs => $1)"
            " RETURNING id", ABANDONED_AFTER)
        await conn.execute("DELETE FROM attachment_shares WHERE created_at < now() - make_interval(secs => $1)",
                           ABANDONED_AFTER)
        keys = [row["key"] for row in await conn.fetch(
            "SELECT key FROM released_files ORDER BY released_at LIMIT $1", BATCH)]
        if keys:
            await store.delete(keys)
            await conn.execute("DELETE FROM released_files WHERE key = ANY($1::text[])", keys)
        await store.remove_abandoned(ABANDONED_AFTER)
    swept = Swept(len(sends), len(attachments), len(keys))
    if any((swept.sends, swept.attachments, swept.files)):
        log.info("housekeeping: %d Sends past their deletion date, %d abandoned attachments, %d files removed",
                 swept.sends, swept.attachments, swept.files)
    return swept


@asynccontextmanager
async def _sweeping(conn: asyncpg.Connection) -> AsyncIterator[bool]:
    """The sweep's lock, taken on ``conn`` for the block if no other replica holds it. The pool
    takes a connection back without resetting it (vaultapi/database.py), so whatever interrupts
    taking or giving back the lock ends the connection, and the lock with it: a lock left on a
    pooled connection would stop every replica's sweeps."""
    try:
        ours = await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK)
    except BaseException:
        conn.terminate()
        raise
    try:
        yield ours
    finally:
        if ours:
            try:
                await conn.execute("SELECT pg_advisory_unlock($1)", LOCK)
            except BaseException:
                conn.terminate()
                raise
