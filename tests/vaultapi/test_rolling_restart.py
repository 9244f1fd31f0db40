"""An API process stopped for a rolling restart (SIGTERM): it stops accepting connections and
finishes the requests it has in hand before it exits, so a write under way is answered, not cut."""

from __future__ import annotations

import asyncio
import signal
import socket
from pathlib import Path

import asyncpg

from tests.support.bwclient import BitwardenClient
from tests.support.processes import wait_until
from tests.support.stack import start_replica
from tests.vaultapi.conftest import PASSWORD


def _refused(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


async def test_a_stopping_api_finishes_the_write_in_hand_and_takes_no_new_connection(
    database_url: str, db: asyncpg.Connection, tmp_path: Path,
) -> None:
    api = start_replica("api", database_url, "https://vault.test", tmp_path)
    client = BitwardenClient(api.url)
    try:
        await client.register("alice@example.com", PASSWORD)
        await client.login()
        async with db.transaction():
            # the write waits on this lock: in hand when the signal comes
            await db.execute("LOCK TABLE folders IN ACCESS EXCLUSIVE MODE")
            creating = asyncio.create_task(client.post("/api/folders", {"name": client.encrypt("Work")}))
            while not await db.fetchval("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                                        " AND datname = current_database()"):
                await asyncio.sleep(0.05)
            api.process._signal(signal.SIGTERM)
            await asyncio.to_thread(wait_until, lambda: _refused(api.port), "the API to stop listening")
            assert not creating.done()
        reply = await creating
        assert reply.status_code == 200, reply.text
        assert reply.headers["connection"] == "close"  # its connection ends with it: nothing left to wait for
        assert await db.fetchval("SELECT count(*) FROM folders WHERE id = $1", reply.json()["id"]) == 1
        await asyncio.to_thread(wait_until, api.process.exited, "the API to exit")
        assert api.process.process.returncode == 0
    finally:
        api.process.stop()
        await client.aclose()
