"""From a SQL commit to the right sockets: every connection of the user, nobody else."""

from __future__ import annotations

import asyncio
import socket
import uuid

import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.wshub.support import HubClient, eventually

CONTEXT = "4f1b2a9e-5d2c-4e8a-9a59-0c6f3b7f9d11"


async def test_commit_reaches_every_connection_of_the_user_with_the_exact_message(db, make_user, connect) -> None:
    user, other = await make_user(), await make_user()
    acting = await connect(user, "messagepack", device=CONTEXT)
    phone = await connect(user, "messagepack")
    browser = await connect(user, "json")
    stranger = await connect(other, "messagepack")
    async with db.transaction():
        await db.execute("SELECT set_config('pgwarden.device_identifier', $1, true)", CONTEXT)
        cipher_id, revision = await db.fetchrow(
            "INSERT INTO ciphers (user_id, type, data) VALUES ($1, 1, '{}') RETURNING id::text, revision_date",
            user.id)
    expected = {"ContextId": CONTEXT, "Type": 1,
                "Payload": {"Id": cipher_id, "UserId": user.id, "OrganizationId": None, "CollectionIds": None,
                            "RevisionDate": revision}}
    # the acting device gets it too: clients drop their own by ContextId
    assert await acting.notification() == expected
    assert await phone.notification() == expected
    json_date = revision.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert await browser.notification() == {**expected, "Payload": {**expected["Payload"], "RevisionDate": json_date}}
    await stranger.nothing()


async def test_rollback_delivers_nothing(db, make_user, connect) -> None:
    user = await make_user()
    client = await connect(user)
    transaction = db.transaction()
    await transaction.start()
    await db.execute("INSERT INTO folders (user_id, name) VALUES ($1, 'x')", user.id)
    await transaction.rollback()
    await client.nothing()


async def test_bulk_statement_delivers_one_event(db, make_user, connect) -> None:
    user = await make_user()
    client = await connect(user)
    await db.execute("INSERT INTO ciphers (user_id, type, data) SELECT $1, 1, '{}' FROM generate_series(1, 50)",
                     user.id)
    notification = await client.notification()
    assert notification["Type"] == 5 and notification["Payload"]["UserId"] == user.id
    assert set(notification["Payload"]) == {"UserId", "Date"}
    await client.nothing()


async def test_log_out_closes_every_session_after_telling_it_the_acting_device_too(db, make_user, connect) -> None:
    user, other_user = await make_user(), await make_user()
    acting = await connect(user, device="device-a")
    other = await connect(user, device="device-b")
    bystander = await connect(other_user, device="device-a")
    async with db.transaction():
        await db.execute("SELECT set_config('pgwarden.device_identifier', 'device-a', true)")
        await db.execute("INSERT INTO sync_events (user_id, push_type) VALUES ($1, 11)", user.id)
    for client in (acting, other):
        notification = await client.notification()
        assert notification["Type"] == 11 and notification["ContextId"] == "device-a"
        assert await client.message() == [7, "logged out", False]
        with pytest.raises(websockets.ConnectionClosed):
            await client.message()
        assert client.ws.close_code == 1008 and client.ws.close_reason == "logged out"
    folder = await db.fetchval("INSERT INTO folders (user_id, name) VALUES ($1, 'x') RETURNING id::text",
                               other_user.id)
    assert (await bystander.notification())["Payload"]["Id"] == folder


async def test_log_out_without_a_context_closes_every_session(db, make_user, connect) -> None:
    user = await make_user()
    devices = [await connect(user, device="device-a"), await connect(user, device="device-b")]
    await db.execute("INSERT INTO sync_events (user_id, push_type) VALUES ($1, 11)", user.id)
    for client in devices:
        notification = await client.notification()
        assert notification["Type"] == 11 and notification["ContextId"] is None
        assert await client.message() == [7, "logged out", False]
        with pytest.raises(websockets.ConnectionClosed):
            await client.message()
        assert client.ws.close_code == 1008 and client.ws.close_reason == "logged out"


_plan = st.lists(st.tuples(st.integers(0, 3), st.sampled_from(["folder", "cipher", "settings"])),
                 min_size=1, max_size=12)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(connections=st.lists(st.integers(0, 3), min_size=4, max_size=4), plan=_plan)
async def test_many_users_each_connection_gets_exactly_its_users_events_in_order(
        db, make_user, connect, connections, plan) -> None:
    users = [await make_user() for _ in range(4)]
    clients = {i: [await connect(users[i], "messagepack" if n % 2 else "json") for n in range(count)]
               for i, count in enumerate(connections)}
    expected: dict[int, list[tuple[int, str | None]]] = {i: [] for i in range(4)}
    for who, change in plan:
        user = users[who]
        if change == "folder":
            item = await db.fetchval("INSERT INTO folders (user_id, name) VALUES ($1, 'x') RETURNING id::text", user.id)
            expected[who].append((7, item))
        elif change == "cipher":
            item = await db.fetchval(
                "INSERT INTO ciphers (user_id, type, data) VALUES ($1, 1, '{}') RETURNING id::text", user.id)
            expected[who].append((1, item))
        else:
            await db.execute("INSERT INTO sync_events (user_id, push_type) VALUES ($1, 10)", user.id)
            expected[who].append((10, None))
    for who, user_clients in clients.items():
        for client in user_clients:
            received = []
            for _ in expected[who]:
                notification = await client.notification()
                assert notification["Payload"]["UserId"] == users[who].id
                received.append((notification["Type"], notification["Payload"].get("Id")))
            assert received == expected[who]
    await asyncio.gather(*(c.nothing(0.2) for user_clients in clients.values() for c in user_clients))
    for user_clients in clients.values():
        for client in user_clients:
            await client.close()


async def test_a_stalled_client_does_not_delay_a_healthy_one(start, db, make_user) -> None:
    hub = await start(hub_send_buffer=65536)
    user = await make_user()
    healthy = await HubClient.connect(hub.ws_url(access_token=user.token()))
    stalled = await _stalled_client(hub.base, user.token())
    # Commits of 100 distinct ~450-byte events until the stalled client's socket buffers and
    # queue are full (a few MB on loopback): the healthy client must get every batch meanwhile.
    batches = 0
    while hub.metric("pgwarden_hub_dropped_connections_total", reason="too_slow") == 0:
        assert batches < 300, "the stalled client was never cut loose"
        async with db.transaction():
            await db.execute("SELECT set_config('pgwarden.device_identifier', $1, true)", "c" * 255)
            await db.execute(
                "INSERT INTO sync_events (user_id, push_type, item_id)"
                " SELECT $1, 12, gen_random_uuid() FROM generate_series(1, 100)", uuid.UUID(user.id))
        for _ in range(100):
            assert (await healthy.notification())["Type"] == 12
        batches += 1
    # the stalled one was cut loose to reconnect and sync; the healthy one stays
    await eventually(lambda: len(hub.app.ctx.registry) == 1, "the stalled connection left the registry")
    await db.execute("INSERT INTO sync_events (user_id, push_type) VALUES ($1, 10)", uuid.UUID(user.id))
    assert (await healthy.notification())["Type"] == 10
    stalled.close()
    await healthy.close()


async def _stalled_client(base: str, token: str) -> socket.socket:
    """A client that completes the upgrade and the handshake, then never reads again."""
    host, port = base.split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    sock.sendall((f"GET /notifications/hub?access_token={token} HTTP/1.1\r\nHost: {base}\r\n"
                  f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    loop = asyncio.get_running_loop()
    upgrade = await loop.run_in_executor(None, sock.recv, 4096)
    assert upgrade.startswith(b"HTTP/1.1 101 "), upgrade
    handshake = b'{"protocol":"messagepack","version":1}\x1e'
    sock.sendall(bytes([0x81, 0x80 | len(handshake)]) + b"\x00\x00\x00\x00" + handshake)  # zero mask
    reply = await loop.run_in_executor(None, sock.recv, 4096)
    assert reply == b"\x81\x03{}\x1e", reply  # then it never reads again
    return sock


async def _device_row(db, user, identifier: str) -> str:
    return await db.fetchval(
        "INSERT INTO devices (user_id, identifier, type, name) VALUES ($1, $2, 8, 'n') RETURNING id::text",
        user.id, identifier)


async def test_log_out_of_one_device_closes_only_that_devices_sessions(db, make_user, connect) -> None:
    user = await make_user()
    gone = await _device_row(db, user, "device-gone")
    await _device_row(db, user, "device-kept")
    closed = [await connect(user, device="device-gone"), await connect(user, "json", device="device-gone")]
    kept = await connect(user, device="device-kept")
    async with db.transaction():
        await db.execute("SELECT set_config('pgwarden.device_identifier', 'device-kept', true)")
        await db.execute("UPDATE devices SET active = false WHERE id = $1::uuid", gone)
        await db.execute("INSERT INTO sync_events (user_id, push_type, item_id) VALUES ($1, 11, $2)", user.id, gone)
    for client in closed:
        notification = await client.notification()
        assert notification["Type"] == 11 and notification["ContextId"] == "device-kept"
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await client.message()
        assert client.ws.close_code == 1008 and client.ws.close_reason == "logged out"
    await kept.nothing()
    folder = await db.fetchval("INSERT INTO folders (user_id, name) VALUES ($1, 'x') RETURNING id::text", user.id)
    assert (await kept.notification())["Payload"]["Id"] == folder


async def test_a_deactivated_devices_token_opens_no_session(hub, db, make_user) -> None:
    user = await make_user()
    await _device_row(db, user, "device-gone")
    await db.execute("UPDATE devices SET active = false WHERE identifier = 'device-gone'")
    with pytest.raises(websockets.InvalidStatus) as refused:
        await HubClient.connect(hub.ws_url(access_token=user.token("device-gone")))
    assert refused.value.response.status_code == 401
    # the account's other devices, with a row or without one, are let in
    await _device_row(db, user, "device-kept")
    for device in ("device-kept", "device-never-seen"):
        client = await HubClient.connect(hub.ws_url(access_token=user.token(device)))
        await client.close()


async def test_auth_request_response_reaches_the_waiting_device_and_the_users_devices(hub, db, make_user,
                                                                                    connect) -> None:
    user, other = await make_user(), await make_user()
    request_id = str(uuid.uuid4())
    waiting = await HubClient.connect(hub.ws_url("/notifications/anonymous-hub", Token=request_id))
    elsewhere = await HubClient.connect(hub.ws_url("/notifications/anonymous-hub", Token=str(uuid.uuid4())))
    signed_in, stranger = await connect(user), await connect(other)
    try:
        await db.execute("INSERT INTO sync_events (user_id, push_type, item_id) VALUES ($1, 15, $2)",
                         user.id, request_id)
        assert (await signed_in.notification())["Type"] == 15
        await db.execute("INSERT INTO sync_events (user_id, push_type, item_id) VALUES ($1, 16, $2)",
                         user.id, request_id)
        message = await waiting.message()
        assert message[3] == "AuthRequestResponseRecieved"
        assert message[4][0]["Type"] == 16 and message[4][0]["Payload"] == {"Id": request_id, "UserId": user.id}
        assert (await signed_in.notification())["Type"] == 16
        await stranger.nothing()
        with pytest.raises(TimeoutError):
            await elsewhere.message(0.4)
    finally:
        await waiting.close()
        await elsewhere.close()


async def test_a_deleted_users_sessions_are_logged_out(hub, db, make_user, connect) -> None:
    """The LogOut is inserted before the account row goes (vaultapi.models.users.delete_account):
    the NOTIFY leaves at commit though the cascade took the row, and the tokens open nothing after."""
    user = await make_user()
    sessions = [await connect(user, device="device-a"), await connect(user, device="device-b")]
    async with db.transaction():
        await db.execute("INSERT INTO sync_events (user_id, push_type) VALUES ($1, 11)", user.id)
        await db.execute("DELETE FROM users WHERE id = $1", user.id)
    for client in sessions:
        assert (await client.notification())["Type"] == 11
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await client.message()
        assert client.ws.close_reason == "logged out"
    with pytest.raises(websockets.InvalidStatus) as refused:
        await HubClient.connect(hub.ws_url(access_token=user.token("device-a")))
    assert refused.value.response.status_code == 401
