"""Finding the database and making it ready: one way for every command, app and test.

``opened(config)`` yields the URL to use (DATABASE_URL, else an embedded PostgreSQL that is
stopped on exit); ``prepare(url)`` migrates the schema and makes the first token signing key,
which is all a fresh database needs before the API and the hub can start.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg

from core.config import Config

__all__ = ["DATABASE_ERRORS", "opened", "prepare"]

#: What a lost or unreachable database raises: retried or answered 503, never a crash.
DATABASE_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)


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
    what is wrong."""
    from db import migrate

    migrate.upgrade(url)
    asyncio.run(_make_keys_and_secrets(url, passphrase, unlock))


async def _make_keys_and_secrets(url: str, passphrase: str | None, unlock: bool) -> None:
    from core.keystore import ensure_signing_key, load_signing_key
    from core.server_secrets import ensure_server_secrets

    conn = await asyncpg.connect(url)
    try:
        await ensure_signing_key(conn, passphrase)
        await ensure_server_secrets(conn)
        if unlock:
            await load_signing_key(conn, passphrase)
    finally:
        await conn.close()
