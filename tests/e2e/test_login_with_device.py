"""Login with device end to end, with the official SignalR client on both sides and each side on
its own hub replica (two APIs, two hubs, one database; each client talks to its replicas
directly, so nothing but PostgreSQL carries the events between them).

A device that logged in once and is signed out asks to log in; it waits on the anonymous hub of
one replica. The signed-in device, on the user hub of the other, hears AuthRequest, encrypts the
user key to the request's public key (RSA-OAEP) and approves. The waiting device hears
AuthRequestResponse, reads the answer with its access code, logs in with it, opens the user key
with its private key and decrypts a vault item. Then the first device deactivates it: its hub
connection hears LogOut and is closed, and its token opens nothing more.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.bwclient import BitwardenClient
from tests.support.hublistener import HubListener
from tests.support.stack import Stack
from tests.support.tls import TlsFiles

pytestmark = pytest.mark.external

PASSWORD = "ask my other device"


@pytest.fixture(scope="module")
def stack(database_url: str, logs: Path) -> Iterator[Stack]:
    running = Stack(database_url, "https://vault.test", logs).start(apis=2, hubs=2)
    try:
        yield running
    finally:
        running.stop()


async def test_waiting_device_logs_in_and_unlocks_through_another_replica(
    stack: Stack, certs: TlsFiles, logs: Path,
) -> None:
    email = f"erin-{uuid.uuid4().hex[:8]}@example.com"
    (api_one, api_two), (hub_one, hub_two) = stack.apis, stack.hubs
    approving = BitwardenClient(api_one.url, device_type=8)
    waiting = BitwardenClient(api_two.url, device_type=9)
    user_hub = await HubListener.node(hub_one.url, certs, logs, "approving-signalr")
    anonymous_hub = await HubListener.anonymous(hub_two.url, certs, logs, "waiting-signalr")
    listeners: list[HubListener] = []
    try:
        await approving.register(email, PASSWORD, name="Erin")
        await approving.login()
        created = await approving.post("/api/ciphers", json=approving.login_item("Bank", password="s3cret!"))
        assert created.status_code == 200
        # the waiting device logged in once (login with device is offered to known devices only)
        await waiting.login(email, PASSWORD)
        waiting.tokens, waiting.user_key, waiting.private_key = {}, None, None
        known = await waiting.http.get(f"/api/devices/knowndevice/{email}/{waiting.device}")
        assert known.json() is True

        await user_hub.connect(approving.access_token)
        response, request = await waiting.ask_to_log_in(email)
        assert response.status_code == 200 and request is not None, response.text
        await anonymous_hub.connect(request.id)

        # the signed-in device hears of it (the item's own event may come first)
        message = await user_hub.next()
        while message["Type"] != 15:
            message = await user_hub.next()
        assert message["Payload"]["Id"] == request.id and message["ContextId"] == waiting.device
        approved = await approving.answer(message["Payload"]["Id"])
        assert approved.status_code == 200, approved.text

        # the waiting device hears the answer on the anonymous hub of the other replica
        answer = await anonymous_hub.next()
        assert answer["Type"] == 16 and answer["Payload"]["Id"] == request.id
        # the user's own devices hear it too (the clients ignore it there)
        assert (await user_hub.next())["Type"] == 16

        login = await waiting.log_in_with_request(email, request)
        assert login.status_code == 200, login.text
        synced = await waiting.sync()
        assert [waiting.decrypt(item["login"]["password"]) for item in synced["ciphers"]] == ["s3cret!"]
        assert waiting.decrypt(synced["ciphers"][0]["name"]) == "Bank"
        # the request is spent
        assert (await waiting.request_token_with(email, request)).status_code == 400

        # now signed in, it listens on the user hub of its replica; deactivated from the other
        # device, its connection gets a LogOut and is closed at once, the other device's stays
        waiting_hub = await HubListener.node(hub_two.url, certs, logs, "deactivated-signalr")
        listeners.append(waiting_hub)
        await waiting_hub.connect(waiting.access_token)
        device_id = (await approving.get(f"/api/devices/identifier/{waiting.device}")).json()["id"]
        assert (await approving.post(f"/api/devices/{device_id}/deactivate")).status_code == 200
        log_out = await waiting_hub.next()
        assert log_out["Type"] == 11 and log_out["ContextId"] == approving.device
        closed = await asyncio.wait_for(waiting_hub.states.get(), 10)
        assert closed["event"] == "closed", closed
        assert (await waiting.get("/api/accounts/profile")).status_code == 401
        await user_hub.nothing()
        assert (await approving.get("/api/accounts/profile")).status_code == 200
    finally:
        for listener in listeners:
            await listener.close()
        await user_hub.close()
        await anonymous_hub.close()
        await approving.aclose()
        await waiting.aclose()
