"""Who gets a connection: slots counted from admission, the caps, the address a client is counted
under, and the headers on every HTTP answer of the hub."""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid

import httpx
import pytest
import websockets

from tests.vaultapi.test_headers import assert_not_stored, assert_secure
from tests.wshub.support import HubClient, eventually
from wshub.wire import WireProtocol

UPGRADE = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
           "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}


async def _refused_status(url: str, **kwargs) -> int:
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(url, **kwargs)
    return refused.value.response.status_code


def _anonymous(hub) -> str:
    return hub.ws_url("/notifications/anonymous-hub", Token=str(uuid.uuid4()))


# -- slots count from admission ----------------------------------------------------------------------


async def test_sockets_that_never_handshake_count_toward_the_address_cap(start, make_user) -> None:
    hub = await start(hub_max_connections_per_ip=3)
    registry = hub.app.ctx.registry
    user = await make_user()
    # upgraded, and silent: no handshake ever
    idle = [await websockets.connect(_anonymous(hub)) for _ in range(2)]
    idle.append(await websockets.connect(hub.ws_url(access_token=user.token())))
    assert registry.slots == 3 and len(registry) == 0
    assert await _refused_status(_anonymous(hub)) == 429
    assert await _refused_status(hub.ws_url(access_token=user.token())) == 429
    await idle[0].close()
    await eventually(lambda: registry.slots == 2, "the closed socket gave its slot back")
    client = await HubClient.connect(hub.ws_url(access_token=user.token()))
    assert registry.slots == 3 and len(registry) == 1
    for ws in idle[1:]:
        await ws.close()
    await client.close()
    await eventually(lambda: registry.slots == 0, "every slot given back")


async def test_every_kind_of_end_gives_the_slot_back(start, make_user) -> None:
    hub = await start(hub_handshake_timeout=1)
    registry = hub.app.ctx.registry
    user = await make_user()
    url = hub.ws_url(access_token=user.token())
    # no handshake in time
    async with websockets.connect(url) as silent:
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(silent.recv(), 5)
    # a refused handshake
    async with websockets.connect(url) as bad:
        await bad.send('{"protocol":"xml","version":1}\x1e')
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await asyncio.wait_for(bad.recv(), 5)
    # served, then a SignalR Close from the client
    client = await HubClient.connect(url)
    await client.ws.send(bytes.fromhex("04 93 07 c0 c2"))
    with pytest.raises(websockets.ConnectionClosed):
        await asyncio.wait_for(client.ws.recv(), 5)
    # gone without a word: the upgrade request, then a reset before the reply is read
    host, port = hub.base.split(":")
    for _ in range(20):
        raw = socket.create_connection((host, int(port)))
        raw.sendall(f"GET /notifications/hub?access_token={user.token()} HTTP/1.1\r\nHost: {hub.base}\r\n".encode()
                    + "".join(f"{k}: {v}\r\n" for k, v in UPGRADE.items()).encode() + b"\r\n")
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        raw.close()
    await eventually(lambda: registry.slots == 0 and len(registry) == 0, "every slot given back")


@pytest.mark.parametrize("upgrade", ["fails", "never completes"])
async def test_a_request_that_never_reaches_its_socket_handler_gives_its_slot_back(hub, monkeypatch, upgrade) -> None:
    async def handshake(self, request, subprotocols=None):
        if upgrade == "fails":
            raise RuntimeError("the upgrade failed after admission")
        await asyncio.Event().wait()  # until the client leaves

    monkeypatch.setattr(WireProtocol, "websocket_handshake", handshake)
    registry = hub.app.ctx.registry
    host, port = hub.base.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    # in two packets: a head that Sanic reads (the hub's protocol reads only a head that comes whole)
    writer.write(f"GET /notifications/anonymous-hub?Token={uuid.uuid4()} HTTP/1.1\r\n".encode())
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.write(f"Host: {hub.base}\r\n".encode() + "".join(f"{k}: {v}\r\n" for k, v in UPGRADE.items()).encode()
                 + b"\r\n")
    if upgrade == "fails":
        assert (await reader.readline()).startswith(b"HTTP/1.1 500 ")
        await eventually(lambda: registry.slots == 0, "the slot went back with the error answer")
    else:
        await eventually(lambda: registry.slots == 1, "admitted")
        writer.close()
        await eventually(lambda: registry.slots == 0, "the slot went back when the client left")
    writer.close()


async def test_a_plain_upgrade_whose_hand_over_fails_is_a_500_and_gives_its_slot_back(hub, monkeypatch) -> None:
    def hand_over(*args, **kwargs):
        raise RuntimeError("the upgrade failed after admission")

    monkeypatch.setattr("wshub.door.hand_over", hand_over)
    host, port = hub.base.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET /notifications/anonymous-hub?Token={uuid.uuid4()} HTTP/1.1\r\nHost: {hub.base}\r\n".encode()
                 + "".join(f"{k}: {v}\r\n" for k, v in UPGRADE.items()).encode() + b"\r\n")
    assert (await reader.readline()).startswith(b"HTTP/1.1 500 ")
    assert hub.app.ctx.registry.slots == 0
    writer.close()


async def test_the_hub_has_a_cap_for_all_connections_and_a_smaller_one_for_anonymous_ones(start, make_user) -> None:
    hub = await start(hub_max_connections=3, hub_max_anonymous_connections=1)
    users = [await make_user() for _ in range(3)]
    waiting = await HubClient.connect(_anonymous(hub))
    assert await _refused_status(_anonymous(hub)) == 503
    kept = [await HubClient.connect(hub.ws_url(access_token=u.token())) for u in users[:2]]
    assert await _refused_status(hub.ws_url(access_token=users[2].token())) == 503
    await kept[0].close()
    await eventually(lambda: hub.app.ctx.registry.slots == 2, "the closed connection gave its slot back")
    kept.append(await HubClient.connect(hub.ws_url(access_token=users[2].token())))
    assert hub.metric("pgwarden_hub_refused_connections_total", reason="full") == 2
    for client in (waiting, *kept):
        await client.close()


async def test_an_address_that_opens_connections_too_fast_is_refused_before_anything_else(start, make_user) -> None:
    hub = await start(hub_ratelimit_max_burst=3, hub_ratelimit_per_minute=1)
    user = await make_user()
    burst = [await HubClient.connect(hub.ws_url(access_token=user.token()),
                                     additional_headers={"X-Real-IP": "203.0.113.7"}) for _ in range(3)]
    for client in burst:  # closed: the pace counts new connections, not open ones
        await client.close()
    assert await _refused_status(hub.ws_url(access_token=user.token()),
                                 additional_headers={"X-Real-IP": "203.0.113.7"}) == 429
    # refused before its token is read (a bad one would be a 401) and before the upgrade is checked
    assert await _refused_status(hub.ws_url(access_token="not-a-token"),
                                 additional_headers={"X-Real-IP": "203.0.113.7"}) == 429
    assert await _refused_status(_anonymous(hub), additional_headers={"X-Real-IP": "203.0.113.7"}) == 429
    async with httpx.AsyncClient() as http:
        not_an_upgrade = await http.get(f"http://{hub.base}/notifications/anonymous-hub",
                                        headers={"X-Real-IP": "203.0.113.7"})
    assert not_an_upgrade.status_code == 429
    # another address has its own pace
    other = await HubClient.connect(hub.ws_url(access_token=user.token()),
                                    additional_headers={"X-Real-IP": "198.51.100.1"})
    await other.close()
    assert hub.metric("pgwarden_hub_refused_connections_total", reason="rate") == 4


async def test_a_client_without_a_proxy_is_paced_when_its_connection_is_accepted(start, make_user, caplog) -> None:
    caplog.set_level(logging.INFO, logger="pgwarden.access")
    hub = await start(hub_ratelimit_max_burst=2, hub_ratelimit_per_minute=1, trusted_proxies=())
    user = await make_user()
    for _ in range(2):
        client = await HubClient.connect(hub.ws_url(access_token=user.token()))
        await client.close()
    answered = len(caplog.records)
    host, port = hub.base.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    # answered and closed before a byte of the request was sent, let alone read
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, body = answer.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 429 Too Many Requests"
    refused = httpx.Response(429, headers=[line.split(": ", 1) for line in lines[1:]], content=body,
                             request=httpx.Request("GET", f"http://{hub.base}/notifications/hub"))
    assert_secure(refused)
    assert_not_stored(refused)
    assert refused.json()["message"] == "too many new connections from this address; try again later"
    assert len(caplog.records) == answered, "Sanic never handled it: no request, no access log line"
    assert hub.metric("pgwarden_hub_refused_connections_total", reason="rate") == 1


async def test_a_second_request_on_a_paced_connection_is_paced_again(start) -> None:
    hub = await start(hub_ratelimit_max_burst=1, hub_ratelimit_per_minute=1, trusted_proxies=())
    host, port = hub.base.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    statuses = []
    for _ in range(2):  # not upgrades: answered with the connection kept alive
        writer.write(f"GET /notifications/anonymous-hub HTTP/1.1\r\nHost: {hub.base}\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        await reader.readexactly(length)
        statuses.append(int(head.split()[1]))
    writer.close()
    assert statuses == [426, 429]


# -- the client's address -------------------------------------------------------------------------


async def test_an_address_claimed_by_a_peer_that_is_no_trusted_proxy_is_ignored(start, make_user, caplog) -> None:
    caplog.set_level(logging.INFO, logger="wshub")
    hub = await start(hub_max_connections_per_ip=1, trusted_proxies=())
    users = [await make_user() for _ in range(2)]
    kept = await HubClient.connect(hub.ws_url(access_token=users[0].token()),
                                   additional_headers={"X-Real-IP": "203.0.113.7"})
    assert await _refused_status(hub.ws_url(access_token=users[1].token()),
                                 additional_headers={"X-Real-IP": "198.51.100.1"}) == 429
    # the log names the address the limit counted, not the one claimed
    assert "more than 1 connections from 127.0.0.1" in caplog.text
    assert "198.51.100.1" not in caplog.text and "203.0.113.7" not in caplog.text
    await kept.close()


async def test_a_proxy_on_loopback_is_trusted_by_default(start, make_user) -> None:
    hub = await start(hub_max_connections_per_ip=1)
    users = [await make_user() for _ in range(2)]
    kept = await HubClient.connect(hub.ws_url(access_token=users[0].token()),
                                   additional_headers={"X-Real-IP": "203.0.113.7"})
    other = await HubClient.connect(hub.ws_url(access_token=users[1].token()),
                                    additional_headers={"X-Real-IP": "198.51.100.1"})
    assert sorted(c.ip for c in hub.app.ctx.registry) == ["198.51.100.1", "203.0.113.7"]
    await kept.close()
    await other.close()


# -- HTTP answers ---------------------------------------------------------------------------------


async def test_every_http_answer_of_the_hub_carries_the_security_headers(start, make_user) -> None:
    hub = await start(hub_max_connections_per_user=1)
    disabled = await start(websocket_enabled=False)
    user = await make_user()
    kept = await HubClient.connect(hub.ws_url(access_token=user.token()))
    async with httpx.AsyncClient() as http:
        answers = {
            "not a websocket": await http.get(f"http://{hub.base}/notifications/hub"),
            "no token": await http.get(f"http://{hub.base}/notifications/hub", headers=UPGRADE),
            "bad auth request id": await http.get(f"http://{hub.base}/notifications/anonymous-hub?Token=x",
                                                  headers=UPGRADE),
            "over the cap": await http.get(f"http://{hub.base}/notifications/hub",
                                           params={"access_token": user.token()}, headers=UPGRADE),
            "disabled": await http.get(f"http://{disabled.base}/notifications/hub", headers=UPGRADE),
            "alive": await http.get(f"http://{hub.base}/alive"),
            "metrics": await http.get(f"http://{hub.base}/metrics"),
            "unknown path": await http.get(f"http://{hub.base}/nope"),
            "negotiate": await http.post(f"http://{hub.base}/notifications/hub/negotiate"),
        }
    assert {name: r.status_code for name, r in answers.items()} == {
        "not a websocket": 426, "no token": 401, "bad auth request id": 400, "over the cap": 429,
        "disabled": 404, "alive": 200, "metrics": 404, "unknown path": 404, "negotiate": 401}
    for response in answers.values():
        assert_secure(response)
        assert_not_stored(response)
    await kept.close()


_VARIANTS = [
    {},
    {"Connection": "keep-alive, Upgrade"},
    {"Connection": "upgrade"},
    {"Connection": "keep-alive"},
    {"Connection": "Upgrade2"},
    {"Upgrade": "WebSocket"},
    {"Upgrade": "websocket, h2c"},
    {"Upgrade": "h2c"},
    {"Sec-WebSocket-Version": "8"},
    {"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ"},
    {"Sec-WebSocket-Key": "c2hvcnQ="},
    {"Sec-WebSocket-Key": "!!!!dGhlIHNhbXBsZSBub25jZQ=="},
    {"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==\u00e9"},
]


@pytest.mark.parametrize("changes", _VARIANTS, ids=[str(v) for v in _VARIANTS])
def test_an_upgrade_taken_at_a_glance_is_one_the_websockets_library_accepts(changes: dict[str, str]) -> None:
    from sanic.compat import Header
    from websockets.datastructures import Headers
    from websockets.http11 import Request
    from websockets.server import ServerProtocol

    from wshub.admission import _plain_upgrade

    headers = {"Host": "hub.test", **UPGRADE, **changes}
    accepted = ServerProtocol().accept(Request("/notifications/hub", Headers(headers))).status_code == 101
    # a glance may send a request on to the library's own check, never let one through it refuses
    assert not _plain_upgrade(Header(headers)) or accepted
    if changes in ({}, {"Connection": "keep-alive, Upgrade"}, {"Upgrade": "WebSocket"}):
        assert _plain_upgrade(Header(headers))  # what clients send is taken at a glance


async def test_stamp_lookups_made_together_each_get_their_own_account(db, database_url, make_user) -> None:
    import asyncpg

    from wshub.admission import StampLookups

    users = [await make_user() for _ in range(3)]
    await db.execute("UPDATE users SET security_stamp = gen_random_uuid() WHERE id = $1::uuid", users[0].id)
    expected = {row["id"]: row["security_stamp"] for row in await db.fetch("SELECT id, security_stamp FROM users")}
    stranger = uuid.uuid4()
    lookups = StampLookups()
    async with asyncpg.create_pool(database_url, min_size=1, max_size=2) as pool:
        asked = [uuid.UUID(user.id) for user in users] * 5 + [stranger]
        rows = await asyncio.gather(*(lookups(pool, user_id) for user_id in asked))
        later = await lookups(pool, uuid.UUID(users[1].id))  # a lookup after the batch: a query of its own
    for user_id, row in zip(asked, rows, strict=True):
        if user_id == stranger:
            assert row is None
        else:
            assert (row["id"], row["security_stamp"]) == (user_id, expected[user_id])
    assert later["security_stamp"] == expected[uuid.UUID(users[1].id)]
