"""The connection pool, with JSON columns read and written as Python values, and JSON parameters
encoded ahead in batches.

Behind a transaction pooler (PgBouncer in transaction mode) each transaction may run on another
server, where a statement prepared on the last one does not exist: the pool then names none and
asyncpg sends each statement unnamed, prepared and run on the same server."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

import asyncpg

from core.database import lends_per_transaction, nothing_to_reset
from vaultapi import body_limits

__all__ = ["BATCH", "EncodedJson", "encode_in_batches", "open_pool"]

log = logging.getLogger(__name__)

#: named statements a connection keeps prepared (asyncpg's default), when it has a server of its own
STATEMENT_CACHE = 100

#: characters of JSON in one parameter of a batch
BATCH = 1024 * 1024


class EncodedJson:
    """JSON text already encoded, passed to a json/jsonb parameter as it is."""

    def __init__(self, text: str) -> None:
        self.text = text


def _encode(value: Any) -> str:
    return value.text if isinstance(value, EncodedJson) else json.dumps(value)


async def encode_in_batches(values: Iterable[Any]) -> list[EncodedJson]:
    """JSON arrays of the values, each about BATCH long, for jsonb parameters of one statement each.

    An import's rows are tens of megabytes: one json.dumps of them all, and asyncpg's copy of
    the result into its buffer, would each hold the event loop. One value is encoded per step."""
    pacer = body_limits.Pacer()
    batches: list[EncodedJson] = []
    # brackets and commas in the same list: the one join is the only copy of a batch
    parts: list[str] = []
    size = 0
    for value in values:
        parts.append("," if parts else "[")
        parts.append(encoded := json.dumps(value))
        size += len(encoded)
        if size >= BATCH:
            parts.append("]")
            batches.append(EncodedJson("".join(parts)))
            parts, size = [], 0
        await pacer.pace()
    if parts:
        parts.append("]")
        batches.append(EncodedJson("".join(parts)))
    return batches


async def _init(conn: asyncpg.Connection) -> None:
    for kind in ("json", "jsonb"):
        await conn.set_type_codec(kind, encoder=_encode, decoder=json.loads, schema="pg_catalog")


async def open_pool(database_url: str) -> asyncpg.Pool:
    cache = STATEMENT_CACHE
    if await lends_per_transaction(database_url):
        log.info("the database URL leads to a transaction pooler: no named prepared statements")
        cache = 0
    return await asyncpg.create_pool(database_url, min_size=1, max_size=10, init=_init,
                                     statement_cache_size=cache, reset=nothing_to_reset)
