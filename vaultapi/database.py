"""The connection pool and the write transaction that names the acting device."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

__all__ = ["open_pool", "write"]


async def _init(conn: asyncpg.Connection) -> None:
    for kind in ("json", "jsonb"):
        await conn.set_type_codec(kind, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def open_pool(database_url: str) -> asyncpg.Pool:
    return await asyncpg.create_pool(database_url, min_size=1, max_size=10, init=_init)


@asynccontextmanager
async def write(pool: asyncpg.Pool, context_id: str | None) -> AsyncIterator[asyncpg.Connection]:
    """One transaction whose events carry context_id (the acting device) as their ContextId."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT set_config('pgwarden.device_identifier', $1, true)", context_id or "")
        yield conn
