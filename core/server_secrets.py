"""Random keys the API keeps in the database (table server_secrets), one per purpose.

Like the signing keys they are made once, by whichever process gets there first, so every API
replica uses the same ones. The hub needs none of them.
"""

from __future__ import annotations

import secrets

import asyncpg

__all__ = ["PRELOGIN", "SERVER_SECRETS", "ensure_server_secrets", "load_server_secret"]

#: keys the stand-in KDF settings of unknown emails (vaultapi.stand_in)
PRELOGIN = "prelogin"
SERVER_SECRETS = (PRELOGIN,)


async def ensure_server_secrets(conn: asyncpg.Connection) -> None:
    """Make every secret that does not exist yet (race-free: the first one stored wins)."""
    for name in SERVER_SECRETS:
        await conn.execute(
            "INSERT INTO server_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            name, secrets.token_bytes(32))


async def load_server_secret(conn: asyncpg.Connection | asyncpg.Pool, name: str) -> bytes:
    value = await conn.fetchval("SELECT value FROM server_secrets WHERE name = $1", name)
    if value is None:
        raise RuntimeError(f"the database has no {name} secret yet: run `pgwarden migrate` first")
    return value
