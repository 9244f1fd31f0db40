"""Hubs as separate processes, and an independent SignalR client library (pysignalr)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pysignalr.client import SignalRClient
from pysignalr.protocol.json import JSONProtocol
from pysignalr.protocol.messagepack import MessagepackProtocol

from tests.support.stack import Replica, start_replica
from tests.wshub.support import HubClient, hub_config


@pytest.fixture
def hub_processes(database_url: str, tmp_path: Path) -> Iterator[Callable[[int], list[Replica]]]:
    """Starts `pgwarden hub` processes on the test database; each must stop cleanly."""
    replicas: list[Replica] = []

    def spawn(count: int) -> list[Replica]:
        started = [start_replica("hub", database_url, hub_config().domain, tmp_path, index=len(replicas) + n + 1)
                   for n in range(count)]
        replicas.extend(started)
        return started

    yield spawn
    exit_codes = [replica.process.stop() for replica in replicas]
    assert exit_codes == [0] * len(replicas), "a hub did not stop cleanly"


async def test_two_hub_processes_on_one_database_both_deliver(hub_processes, db, make_user) -> None:
    user = await make_user()
    clients = [await HubClient.connect(f"ws://{hub.address}/notifications/hub?access_token={user.token()}")
               for hub in hub_processes(2)]
    folder = await db.fetchval("INSERT INTO folders (user_id, name) VALUES ($1, 'x') RETURNING id::text", user.id)
    for client in clients:
        notification = await client.notification()
        assert notification["Type"] == 7 and notification["Payload"]["Id"] == folder
    for client in clients:
        await client.close()


@pytest.mark.parametrize("protocol", [MessagepackProtocol(), JSONProtocol()], ids=["messagepack", "json"])
async def test_pysignalr_client_receives_notifications(hub, db, make_user, protocol) -> None:
    user = await make_user()
    token = user.token("pysignalr-device")
    # pysignalr applies access_token_factory only after its first request, so the header goes
    # in from the start; it negotiates first (POST .../negotiate), then opens the WebSocket
    client = SignalRClient(f"http://{hub.base}/notifications/hub", protocol=protocol,
                           headers={"Authorization": f"Bearer {token}"})
    received: asyncio.Queue = asyncio.Queue()
    opened = asyncio.Event()

    async def on_message(arguments: list) -> None:
        await received.put(arguments)

    async def on_open() -> None:
        opened.set()

    client.on("ReceiveMessage", on_message)
    client.on_open(on_open)
    running = asyncio.create_task(client.run())
    try:
        await asyncio.wait_for(opened.wait(), 10)
        async with db.transaction():
            await db.execute("SELECT set_config('pgwarden.device_identifier', 'pysignalr-device', true)")
            cipher = await db.fetchval(
                "INSERT INTO ciphers (user_id, type, data) VALUES ($1, 1, '{}') RETURNING id::text", user.id)
        [argument] = await asyncio.wait_for(received.get(), 10)
        assert argument["ContextId"] == "pysignalr-device" and argument["Type"] == 1
        assert argument["Payload"]["Id"] == cipher and argument["Payload"]["UserId"] == user.id
        assert set(argument["Payload"]) == {"Id", "UserId", "OrganizationId", "CollectionIds", "RevisionDate"}
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
