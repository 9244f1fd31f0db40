"""The connection pool, with JSON columns read and written as Python values."""

from __future__ import annotations

import json

import asyncpg

__all__ = ["open_pool"]


async def _init(conn: asyncpg.Connection) -> None:
    for kind in ("json", "jsonb"):
        await conn.set_type_codec(kind, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def open_pool(database_url: str) -> asyncpg.Pool:
    return await asyncpg.create_pool(database_url, min_size=1, max_size=10, init=_init)
