"""PgBouncer in front of the database, as a test's own process (the Debian package).

The API works through a transaction pooler: it sends no named prepared statements there, and the
acting device of each write (a transaction-local setting) reaches that write's events and no
other. The hub refuses such a pooler with the reason (LISTEN needs a session of its own) and
works through a session-mode pool.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.database import lends_per_transaction
from tests.support.bwclient import BitwardenClient
from tests.support.hublistener import HubListener
from tests.support.listen import EventListener
from tests.support.pgcluster import PgBouncer, Workspace
from tests.support.processes import ManagedProcess, wait_until
from tests.support.stack import PGWARDEN, Replica, start_replica
from tests.support.tls import TlsFiles

pytestmark = pytest.mark.external

DOMAIN = "http://localhost"
WRITES_PER_DEVICE = 12


@pytest.fixture(scope="module")
def bouncer(database_url: str, logs: Path) -> Iterator[PgBouncer]:
    """PgBouncer with two server connections per pool: concurrent transactions share them."""
    workspace = Workspace(logs)
    address, dbname = database_url.split("@", 1)[1].split("/", 1)
    bouncer = PgBouncer(workspace, address, dbname, pool_size=2)
    try:
        yield bouncer
    finally:
        bouncer.stop()
        workspace.remove()


@pytest.fixture(scope="module")
def api(bouncer: PgBouncer, logs: Path) -> Iterator[Replica]:
    replica = start_replica("api", bouncer.url("transaction"), DOMAIN, logs)
    try:
        yield replica
    finally:
        replica.process.stop()


async def test_the_probe_tells_a_transaction_pooler_from_a_session(database_url: str, bouncer: PgBouncer) -> None:
    assert not await lends_per_transaction(database_url)
    assert await lends_per_transaction(bouncer.url("transaction"))
    assert not await lends_per_transaction(bouncer.url("session"))


async def test_the_api_works_through_a_transaction_pooler_and_each_write_names_its_own_device(
    api: Replica, database_url: str,
) -> None:
    assert "transaction pooler" in api.process.tail(200)
    devices = [BitwardenClient(api.url) for _ in range(2)]
    events = await EventListener.connect(database_url)  # on PostgreSQL itself, not the pooler
    try:
        for device in devices:
            await device.register(f"{uuid.uuid4().hex[:12]}@example.com", "pooled writes everywhere")
            await device.login()

        async def folders(device: BitwardenClient) -> list[tuple[str, str]]:
            replies = await asyncio.gather(*(device.post("/api/folders", {"name": device.encrypt(f"f{n}")})
                                             for n in range(WRITES_PER_DEVICE)))
            assert [reply.status_code for reply in replies] == [200] * WRITES_PER_DEVICE, replies[0].text
            return [(reply.json()["id"], device.device) for reply in replies]

        written = dict(pair for pairs in await asyncio.gather(*map(folders, devices)) for pair in pairs)
        received = [await events.next() for _ in written]
        # every event names the device whose request wrote it: the setting never crossed transactions
        assert {event.item_id: event.device_identifier for event in received} == written
        for device in devices:
            synced = await device.sync()
            assert len(synced["folders"]) == WRITES_PER_DEVICE
    finally:
        await events.close()
        for device in devices:
            await device.aclose()


def test_the_hub_refuses_a_transaction_pooler_with_the_reason(bouncer: PgBouncer, logs: Path) -> None:
    hub = ManagedProcess("hub-pooled", [*PGWARDEN, "hub"], logs / "hub-pooled.log", env={
        "DATABASE_URL": bouncer.url("transaction"), "DOMAIN": DOMAIN, "WEBSOCKET_ADDRESS": "127.0.0.1",
        "WEBSOCKET_PORT": "0", "PYTHONUNBUFFERED": "1"})
    try:
        wait_until(hub.exited, "the hub to stop")
    finally:
        hub.stop()
    assert hub.process.returncode == 2
    assert "LISTEN needs a session of its own" in hub.tail()


async def test_the_hub_listens_through_a_session_pool(
    api: Replica, bouncer: PgBouncer, certs: TlsFiles, logs: Path,
) -> None:
    hub = start_replica("hub", bouncer.url("session"), DOMAIN, logs, index=2)
    client = BitwardenClient(api.url)
    listener = await HubListener.node(hub.url, certs, logs, "session-pool-signalr")
    try:
        await client.register(f"{uuid.uuid4().hex[:12]}@example.com", "a session of its own")
        await client.login()
        await listener.connect(client.access_token)
        created = await client.post("/api/folders", {"name": client.encrypt("heard")})
        message = await listener.next()
        assert (message["Type"], message["Payload"]["Id"], message["ContextId"]) == (
            7, created.json()["id"], client.device)
    finally:
        await listener.close()
        await client.aclose()
        hub.process.stop()
