"""The LISTEN side: one dedicated PostgreSQL connection per hub process, kept alive.

A lost link (network, server restart, ``pg_terminate_backend``) is noticed at once when the
server says so (termination listener) and within a probe interval when it goes silent (a
``SELECT`` with a timeout). The listener then reconnects with backoff and closes the gap: every
connected user whose revision date moved since the last moment the link was known good (minus a
margin for transactions that were open then) gets one SyncVault, so their clients re-check and
converge. Users untouched by the gap hear nothing.

LISTEN and NOTIFY exist only on the primary, and only for a session: with a multi-host URL
(``?target_session_attrs=read-write``) every reconnect finds the primary of the moment, so the
link follows a failover by itself; a URL that leads to a transaction pooler is refused, since
LISTEN there would hear nothing (docs/scaling.md).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from core.database import DATABASE_ERRORS, TransactionPooler, lends_per_transaction
from db.events import CHANNEL, Event, EventError, PushType, decode_event

__all__ = ["Ingress", "IngressTuning", "refuse_transaction_pooler"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngressTuning:
    probe_interval: float = 2.0
    probe_timeout: float = 2.0
    #: For connecting, listening and closing the gap: a link can die in the middle of that too.
    open_timeout: float = 10.0
    #: Transactions open this long before the gap may commit inside it with older dates.
    gap_margin: timedelta = timedelta(seconds=10)
    backoff_initial: float = 0.1
    backoff_max: float = 5.0


async def refuse_transaction_pooler(database_url: str) -> None:
    """Raise TransactionPooler when the URL leads to one: LISTEN needs a session of its own."""
    if await lends_per_transaction(database_url):
        raise TransactionPooler(
            "DATABASE_URL leads to a transaction pooler: LISTEN needs a session of its own, which"
            " such a pooler does not keep. Give the hub a URL to PostgreSQL itself or to a"
            " session-mode pool (docs/scaling.md).")


class Ingress:
    """Feeds every event on :data:`CHANNEL` to ``on_event``; runs until cancelled."""

    def __init__(
        self,
        database_url: str,
        on_event: Callable[[Event], object],
        connected_users: Callable[[], list[str]],
        *,
        tuning: IngressTuning = IngressTuning(),
        on_reconnect: Callable[[], None] = lambda: None,
    ) -> None:
        self.database_url = database_url
        self.on_event = on_event
        self.connected_users = connected_users
        self.tuning = tuning
        self.on_reconnect = on_reconnect
        self.backend_pid: int | None = None
        self.connected = asyncio.Event()
        self._conn: asyncpg.Connection | None = None
        self._lost = asyncio.Event()
        #: Database time up to which every committed event is known to have arrived.
        self._good_until: datetime | None = None

    async def connect(self) -> None:
        """Open the LISTEN connection (retrying with backoff); the first call starts clean."""
        delay = self.tuning.backoff_initial
        while True:
            try:
                await self._open()
                return
            except TransactionPooler as error:  # retrying would not change the URL
                log.error("%s", error)
                raise
            except DATABASE_ERRORS as error:
                log.warning("LISTEN connection failed (%s); retrying in %.1f s", error, delay)
            except Exception:  # a bug in recovery must not end the one LISTEN task: retry
                log.exception("LISTEN connection failed; retrying in %.1f s", delay)
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self.tuning.backoff_max)

    async def run(self) -> None:
        """Probe the link; on loss, reconnect and recover the gap. Call after ``connect``."""
        while True:
            try:
                await self._watch()
            except Exception:  # never let the one LISTEN task die: reconnect instead
                log.exception("LISTEN watch failed")
            self.connected.clear()
            await self._discard()
            log.warning("LISTEN connection lost; reconnecting")
            await self.connect()
            self.on_reconnect()

    async def close(self) -> None:
        await self._discard()

    # -- private ------------------------------------------------------------------------------

    async def _open(self) -> None:
        async with asyncio.timeout(self.tuning.open_timeout):
            await refuse_transaction_pooler(self.database_url)
            conn = await asyncpg.connect(self.database_url,
                                         server_settings={"application_name": "pgwarden-hub-listen"})
            try:
                self._lost = asyncio.Event()
                lost = self._lost
                conn.add_termination_listener(lambda _conn: lost.set())
                await conn.add_listener(CHANNEL, self._received)
                # Listening first, then looking back: a change committed from here on arrives live.
                now = await conn.fetchval("SELECT clock_timestamp()")
                if self._good_until is not None:
                    await self._recover(conn, self._good_until - self.tuning.gap_margin)
            except BaseException:
                conn.terminate()
                raise
        self._conn = conn
        self._good_until = now
        self.backend_pid = conn.get_server_pid()
        self.connected.set()

    async def _recover(self, conn: asyncpg.Connection, since: datetime) -> None:
        users = self.connected_users()
        if not users:
            return
        rows = await conn.fetch(
            "SELECT user_id::text AS id, revision_date FROM pgwarden_user_revisions($1::uuid[]) WHERE revision_date > $2",
            users, since)
        log.info("LISTEN gap since %s: %d of %d connected users changed", since, len(rows), len(users))
        for row in rows:
            self.on_event(Event(PushType.SYNC_VAULT, row["id"], None, None, row["revision_date"], None))

    async def _watch(self) -> None:
        """Returns when the link is lost."""
        assert self._conn is not None
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for drops a cancellation that comes as
        # its awaitable completes, and the hub's shutdown would wait for this task for ever
        while not self._lost.is_set():
            try:
                async with asyncio.timeout(self.tuning.probe_interval):
                    await self._lost.wait()
                return
            except TimeoutError:
                pass
            try:
                async with asyncio.timeout(self.tuning.probe_timeout):
                    now = await self._conn.fetchval("SELECT clock_timestamp()")
            except DATABASE_ERRORS as error:
                log.warning("LISTEN probe failed: %r", error)
                return
            # Notifications are delivered in order before the reply: all up to now arrived.
            self._good_until = now

    async def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()

    def _received(self, conn: object, pid: int, channel: str, payload: str) -> None:
        try:
            event = decode_event(payload)
        except EventError as error:
            log.error("%s", error)
            return
        self.on_event(event)
