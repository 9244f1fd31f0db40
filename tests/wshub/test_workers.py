"""``pgwarden hub`` with HUB_WORKERS=2: two processes on one port, each with its own LISTEN
connection, and the per-user and per-address caps counted across both."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import psutil
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from bench.scratch import free_port, until_alive
from tests.wshub.support import HubClient, HubUser, eventually
from wshub.tally import SharedTally

WORKERS = 2


class WorkersHub:
    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.port = port

    def url(self, token: str) -> str:
        return f"ws://127.0.0.1:{self.port}/notifications/hub?access_token={token}"

    def workers(self) -> list[psutil.Process]:
        # not multiprocessing's resource tracker, the other child
        return [child for child in psutil.Process(self.process.pid).children()
                if any("spawn_main" in part for part in child.cmdline())]

    def worker_of(self, client: HubClient) -> int:
        """The pid of the worker holding this client's connection."""
        client_port = client.ws.local_address[1]
        for worker in self.workers():
            for conn in worker.net_connections("tcp"):
                if conn.raddr and conn.raddr.port == client_port and conn.laddr.port == self.port:
                    return worker.pid
        raise AssertionError("no worker holds the connection")


@pytest.fixture
async def start_workers(database_url: str) -> AsyncIterator[Callable[..., Awaitable[WorkersHub]]]:
    hubs: list[WorkersHub] = []

    async def start(**settings: str) -> WorkersHub:
        port = free_port()
        env = {**os.environ, "DATABASE_URL": database_url, "WEBSOCKET_ADDRESS": "127.0.0.1",
               "WEBSOCKET_PORT": str(port), "DOMAIN": "https://vault.test", "HUB_WORKERS": str(WORKERS),
               "HUB_HANDSHAKE_TIMEOUT": "15", "LOG_LEVEL": "warning", **settings}
        process = await asyncio.create_subprocess_exec(sys.executable, "-m", "pgwarden.cli", "hub", env=env)
        hub = WorkersHub(process, port)
        hubs.append(hub)
        await until_alive(port, "hub")

        def all_listening() -> bool:
            workers = hub.workers()
            return len(workers) == WORKERS and all(
                any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in w.net_connections("tcp"))
                for w in workers)

        await eventually(all_listening, "every worker listens on the port")
        return hub

    yield start
    for hub in hubs:
        hub.process.terminate()
        await asyncio.wait_for(hub.process.wait(), 30)


async def _refused_status(url: str) -> int:
    try:
        ws = await websockets.connect(url)
    except InvalidStatus as refusal:
        return refusal.response.status_code
    await ws.close()
    return 101


async def _folder(db: Any, user: HubUser) -> str:
    folder = uuid.uuid4()
    await db.execute("INSERT INTO folders (id, user_id, name) VALUES ($1, $2::uuid, 'n')", folder, user.id)
    return str(folder)


async def test_an_event_reaches_the_clients_of_every_worker(start_workers, make_user, db) -> None:
    hub = await start_workers()
    user = await make_user()
    # the kernel spreads connections by their ports: 20 leave both workers some, but for a
    # chance of 1 in 500,000
    clients = [await HubClient.connect(hub.url(user.token())) for _ in range(20)]
    try:
        serving = {hub.worker_of(client) for client in clients}
        assert serving == {worker.pid for worker in hub.workers()}
        folder = await _folder(db, user)
        for client in clients:
            notification = await client.notification()
            assert notification["Payload"]["Id"] == folder
    finally:
        await asyncio.gather(*(client.close() for client in clients))


async def test_the_per_user_cap_counts_the_connections_of_every_worker(start_workers, make_user) -> None:
    hub = await start_workers(HUB_MAX_CONNECTIONS_PER_USER="3")
    user, other = await make_user(), await make_user()
    clients = [await HubClient.connect(hub.url(user.token())) for _ in range(3)]
    try:
        # each attempt lands on either worker: every one is refused
        assert [await _refused_status(hub.url(user.token())) for _ in range(10)] == [429] * 10
        assert await _refused_status(hub.url(other.token())) == 101  # another user's own count
        await clients.pop().close()

        async def admitted() -> bool:
            return await _refused_status(hub.url(user.token())) == 101

        for _ in range(100):  # the place comes back once the closed connection's end is seen
            if await admitted():
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("a closed connection's place never came back")
    finally:
        await asyncio.gather(*(client.close() for client in clients))


async def test_the_per_address_cap_counts_the_connections_of_every_worker(start_workers, make_user) -> None:
    hub = await start_workers(HUB_MAX_CONNECTIONS_PER_IP="3")
    users = [await make_user() for _ in range(4)]
    clients = [await HubClient.connect(hub.url(user.token())) for user in users[:3]]
    try:
        assert [await _refused_status(hub.url(users[3].token())) for _ in range(10)] == [429] * 10
    finally:
        await asyncio.gather(*(client.close() for client in clients))


async def test_the_pace_of_new_connections_counts_every_worker(start_workers, make_user) -> None:
    hub = await start_workers(HUB_RATELIMIT_MAX_BURST="3", HUB_RATELIMIT_PER_MINUTE="1")
    user = await make_user()
    statuses = []
    for _ in range(10):
        try:
            client = await HubClient.connect(hub.url(user.token()))
        except InvalidStatus as refused:
            statuses.append(refused.response.status_code)
        else:
            statuses.append(101)
            await client.close()
    assert statuses == [101] * 3 + [429] * 7


def _take_many(tally: SharedTally, user: str, attempts: int, taken: Any) -> None:
    for _ in range(attempts):
        if tally.take("192.0.2.1", user, 10_000, 50) is None:
            with taken.get_lock():
                taken.value += 1


def test_processes_taking_from_a_shared_tally_never_pass_the_cap_together() -> None:
    context = multiprocessing.get_context("spawn")
    tally = SharedTally(context)
    taken = context.Value("i", 0)
    processes = [context.Process(target=_take_many, args=(tally, "alice", 200, taken)) for _ in range(3)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    assert taken.value == 50
    assert tally.take("192.0.2.1", "alice", 10_000, 50) == "user"
    tally.give_back("192.0.2.1", "alice")
    assert tally.take("192.0.2.1", "alice", 10_000, 50) is None  # a place given back is free again
    assert tally.take("192.0.2.1", "bob", 10_000, 50) is None  # another user's own count
