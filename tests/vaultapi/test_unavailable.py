"""A database that cannot take a request right now is a 503 the client retries, never a 500:
a session ended by the server in the middle of a request (a primary shutting down), and a server
that only reads (a standby, a demoted primary). The API recovers by itself once it can write."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg

from tests.support.bwclient import BitwardenClient
from tests.vaultapi.conftest import registered

UNAVAILABLE = {"message": "The service is temporarily unavailable.", "validationErrors": None, "object": "error"}


async def _api_backends(db: asyncpg.Connection) -> list[int]:
    return [row["pid"] for row in await db.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")]


async def test_a_session_ended_mid_request_is_a_503_and_the_next_request_works(
    new_client: Callable[..., BitwardenClient], db: asyncpg.Connection,
) -> None:
    alice = await registered(new_client, "alice@example.com", "Alice")
    async with db.transaction():
        await db.execute("LOCK TABLE folders IN ACCESS EXCLUSIVE MODE")
        creating = asyncio.create_task(alice.post("/api/folders", {"name": alice.encrypt("Work")}))
        waiting = []
        while not waiting:
            await asyncio.sleep(0.05)
            waiting = await db.fetch("SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                                     " AND datname = current_database()")
        # what a fast shutdown does to every session: "terminating connection due to administrator command"
        await db.execute("SELECT pg_terminate_backend($1)", waiting[0]["pid"])
        reply = await creating
    assert (reply.status_code, reply.json()) == (503, UNAVAILABLE)
    assert (await alice.post("/api/folders", {"name": alice.encrypt("Work")})).status_code == 200


async def test_a_read_only_server_is_a_503_until_it_takes_writes_again(
    new_client: Callable[..., BitwardenClient], db: asyncpg.Connection,
) -> None:
    alice = await registered(new_client, "alice@example.com", "Alice")
    name = await db.fetchval("SELECT current_database()")
    await db.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    try:
        for pid in await _api_backends(db):  # sessions begun from now on only read
            await db.execute("SELECT pg_terminate_backend($1)", pid)
        replies = [await alice.post("/api/folders", {"name": alice.encrypt("Work")}) for _ in range(3)]
        assert [(reply.status_code, reply.json()) for reply in replies] == [(503, UNAVAILABLE)] * 3
        assert (await alice.get("/api/sync")).status_code == 200  # reading goes on
    finally:
        await db.execute(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
    for pid in await _api_backends(db):
        await db.execute("SELECT pg_terminate_backend($1)", pid)
    # each pooled session the server ended answers one 503 at most (10 in the pool), then writes go on
    statuses = []
    while 200 not in statuses and len(statuses) <= 10:
        statuses.append((await alice.post("/api/folders", {"name": alice.encrypt("Work")})).status_code)
    assert set(statuses) <= {200, 503} and statuses[-1] == 200, statuses
