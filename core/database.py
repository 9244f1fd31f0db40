"""Finding the database and making it ready: one way for every command, app and test.

``opened(config)`` yields the URL to use (DATABASE_URL, else an embedded PostgreSQL that is
stopped on exit); ``prepare(url)`` migrates the schema and makes the first token signing key,
which is all a fresh database needs before the API and the hub can start.

A URL may name several hosts (``postgresql://h1,h2/db?target_session_attrs=read-write``): every
connection then goes to whichever of them accepts writes, so a promoted standby is found by
itself. A URL may also lead to a pooler: ``lends_per_transaction`` tells a transaction pooler
(PgBouncer in transaction mode) apart from a session of one's own, since prepared statements,
session locks and LISTEN need the latter (docs/scaling.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg

from core.config import Config

__all__ = ["DATABASE_ERRORS", "NO_PRIMARY", "TransactionPooler", "lends_per_transaction", "nothing_to_reset", "opened",
           "prepare"]

#: What a database that cannot take the request right now raises: unreachable, shutting down or
#: restarting (class 57), read-only (a standby, a demoted primary), no host of a multi-host URL
#: accepting writes (TargetServerAttributeNotMatched: a failover under way), or a pooled session
#: the server ended while it sat idle (InternalClientError: the driver is still reading the
#: server's goodbye when the next statement comes). Answered 503 by the API: the client tries again.
NO_PRIMARY = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.ReadOnlySQLTransactionError,
    asyncpg.InternalClientError,
)

#: What a lost or unreachable database raises: retried or answered 503, never a crash.
DATABASE_ERRORS = (*NO_PRIMARY, asyncpg.PostgresError)

#: Seconds one side of the pooler probe waits for a server while the other holds a transaction.
_POOLER_WAIT = 5.0


class TransactionPooler(RuntimeError):
    """Raised where a session of one's own is needed and the URL leads to a transaction pooler."""


async def lends_per_transaction(url: str, tries: int = 3) -> bool:
    """Whether the URL leads to a pooler that lends a server per transaction (PgBouncer in
    transaction or statement mode) rather than a session of one's own.

    Two clients ask for their server's pid while one holds a transaction open: a server of
    one's own never serves the other client, never changes between statements, and never keeps
    its client waiting. A session-mode pool passes, as a direct connection does.
    """
    first = await asyncpg.connect(url, statement_cache_size=0)
    try:
        second = await asyncpg.connect(url, statement_cache_size=0)
        try:
            for _ in range(tries):
                mine = await first.fetchval("SELECT pg_backend_pid()")
                async with second.transaction():
                    other = await second.fetchval("SELECT pg_backend_pid()")
                    try:
                        again = await first.fetchval("SELECT pg_backend_pid()", timeout=_POOLER_WAIT)
                    except TimeoutError:  # waited for the server the other transaction holds
                        return True
                if other == mine or again != mine:
                    return True
            return False
        finally:
            second.terminate()
    finally:
        first.terminate()


@contextmanager
def opened(config: Config) -> Iterator[str]:
    """The database URL; an embedded server started for it is stopped when the block ends."""
    from db.embedded import resolve_database_url

    url, embedded = resolve_database_url(config.database_url, config.data_folder)
    try:
        yield url
    finally:
        if embedded is not None:
            embedded.stop()


def prepare(url: str, passphrase: str | None = None, *, unlock: bool = False) -> None:
    """Migrate to the latest schema, then make the signing key (encrypted with the passphrase when
    there is one) and the server secrets if there are none yet. With ``unlock`` (the API,
    `pgwarden up`) also check that the passphrase opens the signing key: a SigningKeyError says
    what is wrong.

    Through a transaction pooler it migrates nothing (the migration lock is a session's, which
    such a pooler would leave held on a server it lends to others): the schema must be current
    already, migrated by `pgwarden migrate` over a direct URL, or TransactionPooler says so."""
    from db import migrate

    pooled = asyncio.run(lends_per_transaction(url))
    if not pooled:
        migrate.upgrade(url)
    elif not migrate.is_current(url):
        raise TransactionPooler(
            "the database schema is not at the latest revision, and DATABASE_URL leads to a transaction"
            " pooler, through which no migration runs: run `pgwarden migrate` with a URL to PostgreSQL"
            " itself (or a session-mode pool) first")
    asyncio.run(_make_keys_and_secrets(url, passphrase, unlock, pooled))


async def _make_keys_and_secrets(url: str, passphrase: str | None, unlock: bool, pooled: bool) -> None:
    from core.keystore import ensure_signing_key, load_signing_key
    from core.server_secrets import ensure_server_secrets

    # a transaction pooler may run each statement on another server: no named statements
    conn = await asyncpg.connect(url, statement_cache_size=0 if pooled else 100)
    try:
        await ensure_signing_key(conn, passphrase)
        await ensure_server_secrets(conn)
        if unlock:
            await load_signing_key(conn, passphrase)
    finally:
        await conn.close()


async def nothing_to_reset(connection: asyncpg.Connection) -> None:
    """A pool's ``reset`` for connections that keep no session state between uses (no SET, LISTEN,
    cursor or advisory lock outlives its use, or the user releases it itself): asyncpg's own reset
    sends a query, a round trip, each time a connection goes back to the pool. An open transaction
    is still rolled back by the pool before this is called."""

