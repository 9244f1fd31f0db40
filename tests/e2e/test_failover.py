"""A PostgreSQL failover under a running deployment, with official clients watching.

A primary and a streaming standby of the test's own (initdb, pg_basebackup), one multi-host URL
(`?target_session_attrs=read-write`) for two API and two hub processes behind Caddy, official
SignalR clients listening (through Caddy, and straight at each hub), and a device writing
continuously. Mid-write the old primary is stopped (fenced first, as Patroni and CloudNativePG
do, so it cannot take writes the new one never sees) and the standby is promoted.

What a user would check: the API said 503 (never 500) while no primary was there and came back
by itself; every write it acknowledged is on the new primary; every listener heard of every
acknowledged write (its live event, or a SyncVault after it) and never lost its connection.
The outage and convergence times are printed, not asserted.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from core.database import prepare
from tests.support.bwclient import BitwardenClient
from tests.support.hublistener import HubListener
from tests.support.pgcluster import Server, Workspace
from tests.support.processes import free_port
from tests.support.proxy import ProxySettings, start_proxy
from tests.support.stack import Stack
from tests.support.tls import TlsFiles

pytestmark = pytest.mark.external

PASSWORD = "the standby takes over"
#: seconds between the old primary stopping and the standby's promotion: no primary at all
NO_PRIMARY_FOR = 1.5
#: acknowledged writes after the recovery before the writer stops
WRITES_AFTER = 10
FOLDER_CREATED, SYNC_VAULT = 7, 5


@dataclass
class Cluster:
    primary: Server
    standby: Server
    url: str  # the multi-host URL every process gets


@pytest.fixture(scope="module")
def cluster(logs: Path) -> Iterator[Cluster]:
    workspace = Workspace(logs)
    servers: list[Server] = []
    try:
        servers.append(primary := Server.primary(workspace))
        asyncio.run(_create_database(primary.url()))
        prepare(primary.url("pgwarden"))
        servers.append(standby := primary.standby())
        url = (f"postgresql://postgres@{primary.address},{standby.address}/pgwarden"
               "?target_session_attrs=read-write")
        yield Cluster(primary, standby, url)
    finally:
        for server in servers:
            server.stop("immediate")
        workspace.remove()


async def _create_database(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE DATABASE pgwarden")
    finally:
        await conn.close()


@dataclass
class Deployment:
    stack: Stack
    settings: ProxySettings


@pytest.fixture(scope="module")
def deployment(cluster: Cluster, certs: TlsFiles, logs: Path) -> Iterator[Deployment]:
    http_port, https_port = free_port(), free_port()
    stack = Stack(cluster.url, f"https://localhost:{https_port}", logs).start(apis=2, hubs=2)
    settings = ProxySettings("localhost", http_port, https_port, certs,
                             api=tuple(r.address for r in stack.apis), hub=tuple(r.address for r in stack.hubs))
    proxy = start_proxy("caddy", settings, logs / "caddy")
    try:
        yield Deployment(stack, settings)
    finally:
        proxy.stop()
        stack.stop()


@dataclass
class Writer:
    """A device that creates folders one after another and notes what the API answered."""

    client: BitwardenClient
    acknowledged: dict[str, float] = field(default_factory=dict)  # folder id -> epoch ms of the 200
    answers: list[tuple[float, int]] = field(default_factory=list)  # (epoch ms, status)
    recovered_at: float | None = None  # epoch ms of the first 200 to a request sent with no primary

    async def run(self, primary_down: asyncio.Event, stop: asyncio.Event) -> None:
        after = 0
        while not stop.is_set():
            sent_while_down = primary_down.is_set()
            try:
                reply = await self.client.post("/api/folders", {"name": self.client.encrypt(str(uuid.uuid4()))})
                status = reply.status_code
            except httpx.TransportError:
                status = 0  # no answer at all: noted, and a failure below
            now = time.time() * 1000
            self.answers.append((now, status))
            if status == 200:
                self.acknowledged[reply.json()["id"]] = now
                if sent_while_down:
                    if self.recovered_at is None:
                        self.recovered_at = now
                    after += 1
                    if after >= WRITES_AFTER:
                        return
            await asyncio.sleep(0.05)


async def _heard(listener: HubListener, into: list[tuple[float, dict[str, Any]]]) -> None:
    while True:
        message = await listener.next(timeout=3600)
        into.append((listener.received_at, message))


def _covered_at(folder_id: str, acked: float, heard: list[tuple[float, dict[str, Any]]]) -> float | None:
    """When the listener learnt of the write: its live event, or the first SyncVault after it."""
    for at, message in heard:
        if message["Type"] == FOLDER_CREATED and message["Payload"]["Id"] == folder_id:
            return at
        if message["Type"] == SYNC_VAULT and at >= acked:
            return at
    return None


async def test_failover_mid_write_loses_no_acknowledged_write_and_listeners_converge(
    cluster: Cluster, deployment: Deployment, certs: TlsFiles, logs: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    url = deployment.settings.url
    writer = Writer(BitwardenClient(url, verify=certs.client_context()))
    reader = BitwardenClient(url, verify=certs.client_context(), device_type=9)
    email = f"{uuid.uuid4().hex[:12]}@example.com"
    await writer.client.register(email, PASSWORD)
    await writer.client.login()
    await reader.login(email, PASSWORD)
    listeners = [await HubListener.node(url, certs, logs, f"proxied-{n}") for n in (1, 2)]
    listeners += [await HubListener.node(hub.url, certs, logs, f"{hub.process.name}-direct")
                  for hub in deployment.stack.hubs]
    heard: dict[str, list[tuple[float, dict[str, Any]]]] = {listener.name: [] for listener in listeners}
    tasks: list[asyncio.Task[None]] = []
    try:
        for listener in listeners:
            await listener.connect(reader.access_token)
            tasks.append(asyncio.create_task(_heard(listener, heard[listener.name])))
        primary_down, stop = asyncio.Event(), asyncio.Event()
        writing = asyncio.create_task(writer.run(primary_down, stop))
        await asyncio.sleep(2)  # writes acknowledged and announced before anything fails

        await asyncio.to_thread(cluster.primary.stop, "fast")  # mid-write
        stopped_at = time.time() * 1000
        primary_down.set()
        await asyncio.sleep(NO_PRIMARY_FOR)
        await asyncio.to_thread(cluster.standby.promote)
        promoted_at = time.time() * 1000
        try:
            await asyncio.wait_for(asyncio.shield(writing), 120)
        finally:
            stop.set()
            await writing

        statuses = {status for _, status in writer.answers}
        assert statuses <= {200, 503}, sorted(writer.answers, key=lambda answer: answer[1] not in (200, 503))[:5]
        assert 503 in statuses, "no write was attempted while there was no primary"
        assert writer.recovered_at is not None

        # every acknowledged write is on the new primary
        assert await cluster.standby.is_primary()
        conn = await asyncpg.connect(cluster.standby.url("pgwarden"))
        try:
            stored = {str(row["id"]) for row in await conn.fetch("SELECT id FROM folders")}
        finally:
            await conn.close()
        assert set(writer.acknowledged) <= stored, set(writer.acknowledged) - stored

        # every listener learns of every acknowledged write, live or by a SyncVault after it
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            uncovered = {name: [fid for fid, acked in writer.acknowledged.items() if _covered_at(fid, acked, got) is None]
                         for name, got in heard.items()}
            if not any(uncovered.values()):
                break
            await asyncio.sleep(0.5)
        assert not any(uncovered.values()), uncovered
        for listener in listeners:
            assert listener.states.empty(), (listener.name, listener.states.get_nowait())  # never closed

        before_recovery = {fid: acked for fid, acked in writer.acknowledged.items() if acked <= writer.recovered_at}
        lines = [f"old primary stopped -> standby promoted: {promoted_at - stopped_at:7.0f} ms",
                 f"old primary stopped -> first acknowledged write: {writer.recovered_at - stopped_at:7.0f} ms"
                 f" ({sum(1 for _, s in writer.answers if s == 503)} answers 503 meanwhile,"
                 f" {len(writer.acknowledged)} writes acknowledged in all)"]
        for name, got in heard.items():
            converged = max(_covered_at(fid, acked, got) or 0 for fid, acked in before_recovery.items())
            first = min((at for at, _ in got if at >= promoted_at), default=float("nan"))
            syncs = sum(1 for at, message in got if message["Type"] == SYNC_VAULT and at >= stopped_at)
            lines.append(f"{name:<18} first message after promotion +{first - promoted_at:6.0f} ms;"
                         f" every write up to the recovery known +{converged - promoted_at:6.0f} ms after"
                         f" promotion ({syncs} gap SyncVault)")
    finally:
        for task in tasks:
            task.cancel()
        for listener in listeners:
            await listener.close()
        await writer.client.aclose()
        await reader.aclose()
    with capsys.disabled():
        print("\nfailover, measured on this machine:\n  " + "\n  ".join(lines))
