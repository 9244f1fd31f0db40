"""Live sync end to end, the way the product promises it, with official clients only.

Two API and two hub processes behind the Caddy example (TLS with a test CA). The `bw` CLI
changes the vault; a SignalR client configured as the Bitwarden clients configure theirs, once
in Node and once in headless Chromium, is told about each change with the CLI's device as
ContextId, fetches what the message names over the REST API and decrypts it with the account
key. The time from the CLI returning to each notification arriving is printed, not asserted.
Then each proxy example (Caddy, nginx, HAProxy, Traefik, Apache) carries a hub WebSocket and a
REST call.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.support.bwcli import Bw, encode
from tests.support.bwclient import BitwardenClient
from tests.support.hublistener import HubListener
from tests.support.processes import ManagedProcess, free_port
from tests.support.proxy import PROXIES, SEVERAL_REPLICAS, ProxySettings, start_proxy
from tests.support.stack import Stack
from tests.support.tls import TlsFiles

pytestmark = pytest.mark.external

EMAIL = "dana@example.com"
PASSWORD = "live sync is the point"


@dataclass
class Deployment:
    stack: Stack
    settings: ProxySettings  # of the Caddy proxy in front of all replicas

    @property
    def url(self) -> str:
        return self.settings.url


@pytest.fixture(scope="module")
def deployment(database_url: str, certs: TlsFiles, logs: Path) -> Iterator[Deployment]:
    http_port, https_port = free_port(), free_port()
    stack = Stack(database_url, f"https://localhost:{https_port}", logs).start(apis=2, hubs=2)
    settings = ProxySettings("localhost", http_port, https_port, certs,
                             api=tuple(r.address for r in stack.apis), hub=tuple(r.address for r in stack.hubs))
    proxy = start_proxy("caddy", settings, logs / "caddy")
    try:
        created = subprocess.run(
            [sys.executable, "-m", "pgwarden.cli", "user", "create", "--email", EMAIL, "--password-stdin"],
            env={"DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"},
            input=PASSWORD, capture_output=True, text=True, timeout=120)
        assert created.returncode == 0, created.stdout + created.stderr
        yield Deployment(stack, settings)
    finally:
        proxy.stop()
        stack.stop()


@pytest.fixture
async def vault(deployment: Deployment, certs: TlsFiles) -> AsyncIterator[BitwardenClient]:
    """Another device of the user: fetches over REST and decrypts with the account key."""
    client = BitwardenClient(deployment.url, verify=certs.client_context(), device_type=9)
    await client.login(EMAIL, PASSWORD)
    try:
        yield client
    finally:
        await client.aclose()


async def notified(listeners: list[HubListener], bw: Bw, push_type: int, item_id: str, what: str,
                   latencies: list[str]) -> None:
    """Each listener gets one message for the change `bw` just made, naming its device."""
    for listener in listeners:
        message = await listener.next()
        assert message["ContextId"] == bw.device_identifier(), (listener.name, message)
        assert (message["Type"], message["Payload"]["Id"]) == (push_type, item_id), (listener.name, message)
        stamped = datetime.fromisoformat(message["Payload"]["RevisionDate"]).timestamp() * 1000
        latencies.append(f"{what:<24} {listener.name:<13} {listener.received_at - bw.returned_at:8.1f} ms"
                         f" {listener.received_at - stamped:8.1f} ms")


async def fetched_name(vault: BitwardenClient, path: str) -> str:
    response = await vault.get(path)
    assert response.status_code == 200, response.text
    return vault.decrypt(response.json()["name"])


async def test_cli_changes_reach_node_and_browser_clients_which_fetch_and_decrypt_them(
    deployment: Deployment, vault: BitwardenClient, certs: TlsFiles, logs: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bw = Bw(logs / "bw", certs)
    await bw.login(deployment.url, EMAIL, PASSWORD)
    listeners = [await HubListener.node(deployment.url, certs, logs),
                 await HubListener.browser(deployment.url, certs, logs)]
    latencies: list[str] = []
    try:
        for listener in listeners:
            await listener.connect(vault.access_token)

        folder = await bw.json("create", "folder", encode({"name": "Projects"}))
        await notified(listeners, bw, 7, folder["id"], "create folder", latencies)
        assert await fetched_name(vault, f"/api/folders/{folder['id']}") == "Projects"

        await bw.json("edit", "folder", folder["id"], encode({"name": "Projects (2026)"}))
        await notified(listeners, bw, 8, folder["id"], "rename folder", latencies)
        assert await fetched_name(vault, f"/api/folders/{folder['id']}") == "Projects (2026)"

        template: dict[str, Any] = await bw.json("get", "template", "item")
        item = await bw.json("create", "item", encode(
            {**template, "name": "Router admin", "folderId": folder["id"], "notes": None,
             "login": {"username": "admin", "password": "0ld-pa55", "uris": [], "totp": None}}))
        await notified(listeners, bw, 1, item["id"], "create item", latencies)
        details = f"/api/ciphers/{item['id']}/details"
        assert await fetched_name(vault, details) == "Router admin"

        await bw.json("edit", "item", item["id"], encode({**item, "name": "Router admin (new)"}))
        await notified(listeners, bw, 0, item["id"], "edit item", latencies)
        assert await fetched_name(vault, details) == "Router admin (new)"

        await bw.run("delete", "item", item["id"])
        await notified(listeners, bw, 0, item["id"], "delete item", latencies)
        assert (await vault.get(details)).json()["deletedDate"] is not None

        await bw.run("delete", "item", item["id"], "--permanent")
        await notified(listeners, bw, 2, item["id"], "delete item --permanent", latencies)
        assert (await vault.get(details)).status_code == 404

        await bw.run("delete", "folder", folder["id"])
        await notified(listeners, bw, 3, folder["id"], "delete folder", latencies)
        assert (await vault.get(f"/api/folders/{folder['id']}")).status_code == 404

        for listener in listeners:
            await listener.nothing()
    finally:
        for listener in listeners:
            await listener.close()
    with capsys.disabled():  # the figures belong in the CI log, pass or fail
        print("\nnotification arrival, measured from: the bw command returning (negative: the client was"
              " told before the CLI had exited) | the change's revision date (set in the transaction)\n  "
              + "\n  ".join(latencies))
        print(f"browser screenshot: {logs / 'browser-received.png'}")


@pytest.mark.parametrize("kind", PROXIES)
async def test_proxy_example_carries_the_hub_websocket_and_the_rest_api(
    kind: str, deployment: Deployment, certs: TlsFiles, logs: Path, db: asyncpg.Connection
) -> None:
    # Caddy fronts every replica already; Traefik gets every replica too, the examples that take
    # one API and one hub get a pair that varies from proxy to proxy.
    proxy: ManagedProcess | None = None
    settings = deployment.settings
    if kind != "caddy":
        apis = [replica.address for replica in deployment.stack.apis]
        hubs = [replica.address for replica in deployment.stack.hubs]
        if kind not in SEVERAL_REPLICAS:
            turn = PROXIES.index(kind)
            apis, hubs = [apis[turn % len(apis)]], [hubs[(turn + 1) % len(hubs)]]
        settings = ProxySettings("localhost", free_port(), free_port(), certs, api=tuple(apis), hub=tuple(hubs))
        proxy = start_proxy(kind, settings, logs / kind)
    client = BitwardenClient(settings.url, verify=certs.client_context())
    listener = await HubListener.node(settings.url, certs, logs, f"{kind}-signalr")
    try:
        await client.login(EMAIL, PASSWORD)  # REST through this proxy
        sync = await client.get("/api/sync")
        assert sync.status_code == 200 and sync.json()["profile"]["email"] == EMAIL
        await listener.connect(client.access_token)  # WebSocket through this proxy

        user_id = sync.json()["profile"]["id"]
        folder_id = await db.fetchval(
            "INSERT INTO folders (user_id, name) VALUES ($1, $2) RETURNING id", user_id, client.encrypt(kind))
        message = await listener.next()
        assert (message["Type"], message["Payload"]["Id"]) == (7, str(folder_id))
        assert await fetched_name(client, f"/api/folders/{folder_id}") == kind
    finally:
        await listener.close()
        await client.aclose()
        if proxy is not None:
            proxy.stop()
