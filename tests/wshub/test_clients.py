"""Hubs as separate processes, and an independent SignalR client library (pysignalr)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from pysignalr.client import SignalRClient
from pysignalr.protocol.json import JSONProtocol
from pysignalr.protocol.messagepack import MessagepackProtocol

from tests.wshub.support import HubClient, free_port, hub_config


async def _until_alive(port: int, process: subprocess.Popen) -> None:
    async with httpx.AsyncClient() as http:
        for _ in range(200):
            assert process.poll() is None, "the hub process exited"
            try:
                if (await http.get(f"http://127.0.0.1:{port}/alive")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError("the hub never became alive")


@pytest.fixture
async def hub_processes(database_url: str) -> AsyncIterator[Callable[[int], asyncio.Future]]:
    processes: list[subprocess.Popen] = []

    async def spawn(count: int) -> list[int]:
        ports = []
        for _ in range(count):
            port = free_port()
            env = {**os.environ, "DATABASE_URL": database_url, "WEBSOCKET_ADDRESS": "127.0.0.1",
                   "WEBSOCKET_PORT": str(port), "DOMAIN": hub_config().domain, "LOG_LEVEL": "warning"}
            processes.append(subprocess.Popen([sys.executable, "-m", "pgwarden.cli", "hub"], env=env))
            ports.append(port)
        for port, process in zip(ports, processes[-count:]):
            await _until_alive(port, process)
        return ports

    yield spawn
    for process in processes:
        process.terminate()
    for process in processes:
        assert process.wait(10) == 0, "the hub did not stop cleanly"


async def test_two_hub_processes_on_one_database_both_deliver(hub_processes, db, make_user) -> None:
    first, second = await hub_processes(2)
    user = await make_user()
    clients = [await HubClient.connect(f"ws://127.0.0.1:{port}/notifications/hub?access_token={user.token()}")
               for port in (first, second)]
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
            await db.execute("SELECT set_config('pgwarden.context_id', 'pysignalr-device', true)")
            cipher = await db.fetchval(
                "INSERT INTO ciphers (user_id, type, data) VALUES ($1, 1, '{}') RETURNING id::text", user.id)
        [argument] = await asyncio.wait_for(received.get(), 10)
        assert argument["ContextId"] == "pysignalr-device" and argument["Type"] == 1
        assert argument["Payload"]["Id"] == cipher and argument["Payload"]["UserId"] == user.id
        assert set(argument["Payload"]) == {"Id", "UserId", "OrganizationId", "CollectionIds", "RevisionDate"}
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
