"""A connection lives no longer than the rights it was opened with: a log out ends every session of
the user, a token's expiry ends its sessions, and the anonymous hub's waits end in time."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import websockets

from tests.wshub.support import FAST, HubClient
from wshub.app import HubTuning

TICKING = HubTuning(ping_interval=0.2, ingress=FAST.ingress, shutdown_grace=1.0)


async def _until_closed(client: HubClient, within: float = 15.0) -> list:
    """Every message the client gets until its socket closes, which must happen within a bound."""
    messages = []
    with pytest.raises(websockets.ConnectionClosed):
        async with asyncio.timeout(within):
            while True:
                messages.append(await client.message(within))
    return messages


async def test_a_stolen_copy_of_the_acting_devices_token_loses_its_session_at_a_password_change(
        hub, make_user, db) -> None:
    user = await make_user()
    token = user.token("device-a")
    owner = await HubClient.connect(hub.ws_url(access_token=token))
    thief = await HubClient.connect(hub.ws_url(access_token=token))
    # what the API does on a password change: a new stamp, and a LogOut naming the acting device
    async with db.transaction():
        await db.execute("SELECT set_config('pgwarden.device_identifier', 'device-a', true)")
        await db.execute("UPDATE users SET security_stamp = gen_random_uuid() WHERE id = $1", uuid.UUID(user.id))
        await db.execute("INSERT INTO sync_events (user_id, push_type) VALUES ($1, 11)", uuid.UUID(user.id))
    for client in (owner, thief):
        [log_out, goodbye] = await _until_closed(client)
        assert log_out[3] == "ReceiveMessage" and log_out[4][0]["Type"] == 11
        assert goodbye == [7, "logged out", False]
        assert client.ws.close_code == 1008
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(hub.ws_url(access_token=token))
    assert refused.value.response.status_code == 401
    assert len(hub.app.ctx.registry) == 0


async def test_a_connection_ends_when_its_token_expires(start, make_user, db) -> None:
    hub = await start(tuning=TICKING)
    user = await make_user()
    expiring = await HubClient.connect(hub.ws_url(access_token=user.token(exp=int(time.time()) + 2)))
    lasting = await HubClient.connect(hub.ws_url(access_token=user.token()))
    started = time.monotonic()
    messages = await _until_closed(expiring)
    assert messages[-1] == [7, None, True] and all(m == [6] for m in messages[:-1])
    assert (expiring.ws.close_code, expiring.ws.close_reason) == (1008, "session expired")
    assert time.monotonic() - started < 5
    folder = await db.fetchval("INSERT INTO folders (user_id, name) VALUES ($1, 'x') RETURNING id::text", user.id)
    assert (await lasting.notification())["Payload"]["Id"] == folder
    assert hub.metric("pgwarden_hub_dropped_connections_total", reason="expired") == 1
    await lasting.close()


async def test_a_wait_on_the_anonymous_hub_ends_with_its_auth_request(start) -> None:
    hub = await start(tuning=HubTuning(ping_interval=0.2, ingress=FAST.ingress, shutdown_grace=1.0,
                                       anonymous_lifetime=1.0))
    waiting = await HubClient.connect(hub.ws_url("/notifications/anonymous-hub", Token=str(uuid.uuid4())))
    messages = await _until_closed(waiting)
    assert messages[-1] == [7, None, True]
    assert (waiting.ws.close_code, waiting.ws.close_reason) == (1008, "session expired")
