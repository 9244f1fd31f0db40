"""The hub's SignalR conversation with raw clients: handshakes, tokens, pings, closes, bad input."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid

import httpx
import jwt
import msgpack
import pytest
import websockets
from cryptography.hazmat.primitives import serialization

from core.keystore import load_signing_key
from core.tokens import SigningKey, TokenIssuer
from tests.wshub.support import FAST, HubClient, decode_frames, eventually
from wshub.app import HubTuning

PING = bytes.fromhex("02 91 06")
METRICS_TOKEN = "metrics-token-for-the-tests-0123"


async def _folder(db, user) -> str:
    return await db.fetchval("INSERT INTO folders (user_id, name) VALUES ($1, 'n') RETURNING id::text", user.id)


def _framed(message: list) -> bytes:
    body = msgpack.packb(message)
    assert len(body) < 128
    return bytes([len(body)]) + body


async def _refused_status(url: str, **kwargs) -> int:
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(url, **kwargs)
    return refused.value.response.status_code


# -- handshakes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["messagepack", "json"])
async def test_handshake_is_answered_and_notifications_use_the_protocol(hub, make_user, db, protocol) -> None:
    user = await make_user()
    async with websockets.connect(hub.ws_url(access_token=user.token())) as ws:
        await ws.send(json.dumps({"protocol": protocol, "version": 1}) + "\x1e")
        assert await ws.recv() == "{}\x1e"
        folder = await _folder(db, user)
        frame = await asyncio.wait_for(ws.recv(), 5)
        assert isinstance(frame, bytes if protocol == "messagepack" else str)
        [message] = decode_frames(frame, protocol)
        argument = message[4][0] if protocol == "messagepack" else message["arguments"][0]
        assert argument["Type"] == 7 and argument["Payload"]["Id"] == folder


async def test_nothing_is_sent_before_the_handshake_reply(hub, make_user, db) -> None:
    user = await make_user()
    async with websockets.connect(hub.ws_url(access_token=user.token())) as ws:
        await _folder(db, user)  # committed while the client has not said which protocol it speaks
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), 0.4)
        await ws.send('{"protocol":"messagepack","version":1}\x1e')
        assert await ws.recv() == "{}\x1e"


async def test_handshake_split_over_frames_with_a_ping_behind_it(hub, make_user, db) -> None:
    user = await make_user()
    async with websockets.connect(hub.ws_url(access_token=user.token())) as ws:
        await ws.send('{"protocol":"messa')
        await ws.send(b'gepack","version":1}\x1e\x02\x91\x06')
        assert await ws.recv() == "{}\x1e"
        folder = await _folder(db, user)
        [message] = decode_frames(await asyncio.wait_for(ws.recv(), 5), "messagepack")
        assert message[4][0]["Payload"]["Id"] == folder


@pytest.mark.parametrize(("handshake", "error"), [
    ('{"protocol":"xml","version":1}\x1e', "The protocol 'xml' is not supported."),
    ('{"protocol":"json","version":7}\x1e', "The server does not support version 7 of the 'json' protocol."),
    ("not json\x1e", "handshake is not JSON"),
])
async def test_bad_handshake_gets_an_error_reply_and_a_close(hub, make_user, handshake, error) -> None:
    user = await make_user()
    async with websockets.connect(hub.ws_url(access_token=user.token())) as ws:
        await ws.send(handshake)
        assert json.loads((await ws.recv()).rstrip("\x1e")) == {"error": error}
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 1002 and ws.close_reason == error


async def test_handshake_deadline_closes_with_a_reason(start, make_user) -> None:
    hub = await start(hub_handshake_timeout=1)
    user = await make_user()
    async with websockets.connect(hub.ws_url(access_token=user.token())) as ws:
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)  # nothing arrives but the close
        assert ws.close_code == 1008 and ws.close_reason == "no handshake within 1 s"


# -- tokens: refused before the upgrade -----------------------------------------------------------


async def test_token_in_authorization_header_is_accepted(hub, make_user) -> None:
    user = await make_user()
    client = await HubClient.connect(hub.ws_url(), additional_headers={"Authorization": f"Bearer {user.token()}"})
    await client.close()


async def test_missing_token_is_401_without_upgrade(hub) -> None:
    assert await _refused_status(hub.ws_url()) == 401
    assert await _refused_status(hub.ws_url(), additional_headers={"Authorization": "Bearer "}) == 401


async def test_expired_token_is_401(hub, make_user) -> None:
    user = await make_user()
    past = int(time.time()) - 3600
    assert await _refused_status(hub.ws_url(access_token=user.token(nbf=past - 60, exp=past))) == 401


async def test_token_not_yet_valid_is_401(hub, make_user) -> None:
    user = await make_user()
    later = int(time.time()) + 600
    assert await _refused_status(hub.ws_url(access_token=user.token(nbf=later))) == 401


async def test_forged_token_signed_by_another_key_is_401(hub, make_user, db) -> None:
    user = await make_user()
    other = SigningKey.generate()
    real_kid = (await load_signing_key(db, None)).kid
    for key in (other, SigningKey(real_kid, other.private_key)):  # its own kid, and the real key's
        forged = TokenIssuer(key, hub.config.token_issuer, 3600)
        token = forged.issue({"sub": user.id, "device": "d", "sstamp": user.security_stamp})
        assert await _refused_status(hub.ws_url(access_token=token)) == 401


async def test_tampered_token_is_401(hub, make_user) -> None:
    user = await make_user()
    header, body, signature = user.token().split(".")
    assert await _refused_status(hub.ws_url(access_token=f"{header}.{body}.{signature[::-1]}")) == 401


@pytest.mark.parametrize("algorithm", ["HS256", "none"])
async def test_wrong_algorithm_token_is_401(hub, make_user, db, algorithm) -> None:
    user = await make_user()
    kid, public_pem = await db.fetchrow("SELECT kid, public_key_pem FROM token_public_keys")
    now = int(time.time())
    claims = {"sub": user.id, "device": "d", "sstamp": user.security_stamp, "nbf": now, "exp": now + 600,
              "iss": hub.config.token_issuer}
    if algorithm == "none":
        token = jwt.encode(claims, None, algorithm="none", headers={"kid": kid})
    else:
        # the classic confusion: the public key used as an HMAC secret
        key = serialization.load_pem_public_key(public_pem.encode()).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        header = jwt.utils.base64url_encode(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
        payload = jwt.utils.base64url_encode(json.dumps(claims).encode())
        import hashlib
        import hmac
        signature = jwt.utils.base64url_encode(hmac.new(key, header + b"." + payload, hashlib.sha256).digest())
        token = (header + b"." + payload + b"." + signature).decode()
    assert await _refused_status(hub.ws_url(access_token=token)) == 401


async def test_token_of_another_issuer_is_401(hub, make_user, db) -> None:
    user = await make_user()
    token = TokenIssuer(await load_signing_key(db, None), "https://elsewhere|login", 600).issue(
        {"sub": user.id, "device": "d", "sstamp": user.security_stamp})
    assert await _refused_status(hub.ws_url(access_token=token)) == 401


async def test_token_from_before_a_security_stamp_reset_is_401(hub, make_user, db) -> None:
    user = await make_user()
    token = user.token()
    await db.execute("UPDATE users SET security_stamp = gen_random_uuid() WHERE id = $1", user.id)
    assert await _refused_status(hub.ws_url(access_token=token)) == 401


async def test_refusal_happens_before_any_upgrade(hub) -> None:
    # a plain HTTP look at the same request: a 401 response, no 101 Switching Protocols
    headers = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    async with httpx.AsyncClient() as http:
        response = await http.get(f"http://{hub.base}/notifications/hub?access_token=garbage", headers=headers)
    assert response.status_code == 401
    assert "sec-websocket-accept" not in response.headers


# -- keepalive, closes, bad input ---------------------------------------------------------------


async def test_server_sends_signalr_pings_as_data_frames(start, make_user) -> None:
    hub = await start(tuning=HubTuning(ping_interval=0.2, ingress=FAST.ingress))
    user = await make_user()
    binary = await HubClient.connect(hub.ws_url(access_token=user.token()), "messagepack")
    text = await HubClient.connect(hub.ws_url(access_token=user.token()), "json")
    for _ in range(3):
        assert await asyncio.wait_for(binary.ws.recv(), 5) == PING
        assert await asyncio.wait_for(text.ws.recv(), 5) == '{"type":6}\x1e'
    await binary.close()
    await text.close()


async def test_client_close_message_ends_the_connection(hub, make_user) -> None:
    user = await make_user()
    client = await HubClient.connect(hub.ws_url(access_token=user.token()))
    await client.ws.send(bytes.fromhex("04 93 07 c0 c2"))
    with pytest.raises(websockets.ConnectionClosed):
        await asyncio.wait_for(client.ws.recv(), 5)
    assert client.ws.close_code == 1000
    await eventually(lambda: len(hub.app.ctx.registry) == 0, "the closed connection left the registry")


async def test_disconnects_leave_nothing_behind(hub, make_user) -> None:
    users = [await make_user() for _ in range(3)]
    clients = [await HubClient.connect(hub.ws_url(access_token=u.token())) for u in users for _ in range(2)]
    assert len(hub.app.ctx.registry) == 6
    for client in clients:
        await client.close()
    await eventually(lambda: len(hub.app.ctx.registry) == 0, "every closed connection left the registry")
    assert hub.app.ctx.registry.user_ids() == []


async def test_client_pings_and_invocations_are_handled_and_the_connection_lives_on(hub, make_user, db) -> None:
    user = await make_user()
    client = await HubClient.connect(hub.ws_url(access_token=user.token()))
    await client.ws.send(PING)
    # the hub has no methods, so a caller waiting for a result gets an error completion
    await client.ws.send(_framed([1, {}, "7", "Send", ["x"]]))
    assert await client.message() == [3, {}, "7", 1, "Unknown hub method"]
    # a fire-and-forget invocation gets nothing
    await client.ws.send(_framed([1, {}, None, "Send", ["x"]]))
    folder = await _folder(db, user)
    assert (await client.notification())["Payload"]["Id"] == folder
    await client.close()


@pytest.mark.parametrize(("protocol", "frame", "code"), [
    ("messagepack", b"\x03\xc1\xc1\xc1", 1003),           # not MessagePack
    ("messagepack", b"\x02\x91\x63", 1003),               # unknown message type
    ("messagepack", b"\xff\xff\xff\xff\xff\x01", 1009),   # absurd length prefix
    ("json", "nope\x1e", 1003),                          # not JSON
    ("json", '{"type":1,"target":3}\x1e', 1003),         # not an invocation
    ("json", '{"type":6,"x":"' + "y" * 70000, 1009),     # a record that never ends
])
async def test_garbage_closes_that_client_and_the_hub_serves_everyone_else(
        hub, make_user, db, protocol, frame, code) -> None:
    user, other = await make_user(), await make_user()
    bad = await HubClient.connect(hub.ws_url(access_token=user.token()), protocol)
    same_user = await HubClient.connect(hub.ws_url(access_token=user.token()))
    other_user = await HubClient.connect(hub.ws_url(access_token=other.token()), "json")
    if len(frame) > hub.config.hub_max_message_size:  # arrives in pieces, each under the frame limit
        for start in range(0, len(frame), 30000):
            await bad.ws.send(frame[start:start + 30000])
    else:
        await bad.ws.send(frame)
    closing = await bad.message()
    if protocol == "json":
        closing = [closing["type"], closing.get("error"), closing.get("allowReconnect")]
    assert closing[0] == 7 and closing[1].startswith("invalid message") and closing[2] is False
    with pytest.raises(websockets.ConnectionClosed):
        await asyncio.wait_for(bad.ws.recv(), 5)
    assert bad.ws.close_code == code
    folder = await _folder(db, user)
    other_folder = await _folder(db, other)
    assert (await same_user.notification())["Payload"]["Id"] == folder
    assert (await other_user.notification())["Payload"]["Id"] == other_folder
    await same_user.close()
    await other_user.close()


async def test_websocket_message_over_the_limit_is_closed_1009(start, make_user, db) -> None:
    hub = await start(hub_max_message_size=1024)
    user = await make_user()
    client = await HubClient.connect(hub.ws_url(access_token=user.token()))
    await client.ws.send(b"\x00" * 4096)
    with pytest.raises(websockets.ConnectionClosed):
        await asyncio.wait_for(client.ws.recv(), 5)
    assert client.ws.close_code == 1009


async def test_shutdown_says_goodbye_with_reconnect_allowed(start, make_user) -> None:
    hub = await start()
    user = await make_user()
    client = await HubClient.connect(hub.ws_url(access_token=user.token()))
    await hub.stop()
    assert await client.message() == [7, None, True]
    with pytest.raises(websockets.ConnectionClosed):
        await asyncio.wait_for(client.ws.recv(), 5)
    assert client.ws.close_code == 1001


# -- limits -------------------------------------------------------------------------------------


async def test_connections_over_the_per_user_cap_are_refused_429(start, make_user) -> None:
    hub = await start(hub_max_connections_per_user=2)
    user, other = await make_user(), await make_user()
    kept = [await HubClient.connect(hub.ws_url(access_token=user.token())) for _ in range(2)]
    assert await _refused_status(hub.ws_url(access_token=user.token())) == 429
    kept.append(await HubClient.connect(hub.ws_url(access_token=other.token())))
    for client in kept:
        await client.close()


async def test_connections_over_the_per_address_cap_are_refused_429(start, make_user) -> None:
    hub = await start(hub_max_connections_per_ip=2)
    users = [await make_user() for _ in range(3)]
    kept = [await HubClient.connect(hub.ws_url(access_token=u.token())) for u in users[:2]]
    assert await _refused_status(hub.ws_url(access_token=users[2].token())) == 429
    for client in kept:
        await client.close()


async def test_per_address_cap_counts_the_address_the_proxy_passes(start, make_user) -> None:
    hub = await start(hub_max_connections_per_ip=1)
    users = [await make_user() for _ in range(3)]
    kept = [await HubClient.connect(hub.ws_url(access_token=users[0].token()),
                                    additional_headers={"X-Real-IP": "203.0.113.7"})]
    assert await _refused_status(hub.ws_url(access_token=users[1].token()),
                                 additional_headers={"X-Real-IP": "203.0.113.7"}) == 429
    # another client behind the same proxy is another address
    kept.append(await HubClient.connect(hub.ws_url(access_token=users[2].token()),
                                        additional_headers={"X-Real-IP": "198.51.100.1"}))
    for client in kept:
        await client.close()


async def test_ip_header_none_counts_the_connection_address(start, make_user) -> None:
    hub = await start(hub_max_connections_per_ip=1, ip_header=None)
    users = [await make_user() for _ in range(2)]
    kept = await HubClient.connect(hub.ws_url(access_token=users[0].token()),
                                   additional_headers={"X-Real-IP": "203.0.113.7"})
    assert await _refused_status(hub.ws_url(access_token=users[1].token()),
                                 additional_headers={"X-Real-IP": "198.51.100.1"}) == 429
    await kept.close()


# -- anonymous hub, negotiate, health, metrics ---------------------------------------------------------


async def test_anonymous_hub_receives_the_auth_request_response(hub, make_user, db) -> None:
    user = await make_user()
    request_id, other_request = str(uuid.uuid4()), str(uuid.uuid4())
    waiting = await HubClient.connect(hub.ws_url("/notifications/anonymous-hub", Token=request_id))
    bystander = await HubClient.connect(hub.ws_url("/notifications/anonymous-hub", Token=other_request))
    await db.execute("INSERT INTO sync_events (user_id, push_type, item_id) VALUES ($1, 16, $2)",
                     user.id, uuid.UUID(request_id))
    message = await waiting.message()
    assert message == [1, {}, None, "AuthRequestResponseRecieved",
                       [{"Type": 16, "Payload": {"Id": request_id, "UserId": user.id}, "UserId": user.id}]]
    with pytest.raises(TimeoutError):
        await bystander.message(0.4)
    await waiting.close()
    await bystander.close()


async def test_anonymous_hub_without_a_request_id_is_400(hub) -> None:
    assert await _refused_status(hub.ws_url("/notifications/anonymous-hub")) == 400
    assert await _refused_status(hub.ws_url("/notifications/anonymous-hub", Token="nope")) == 400


async def test_negotiate_offers_websockets(hub, make_user) -> None:
    user = await make_user()
    async with httpx.AsyncClient() as http:
        response = await http.post(f"http://{hub.base}/notifications/hub/negotiate",
                                   headers={"Authorization": f"Bearer {user.token()}"})
        refused = await http.post(f"http://{hub.base}/notifications/hub/negotiate")
    body = response.json()
    assert response.status_code == 200 and len(body["connectionId"]) >= 16
    assert body["availableTransports"] == [{"transport": "WebSockets", "transferFormats": ["Text", "Binary"]}]
    assert refused.status_code == 401


async def test_disabled_websockets_negotiate_nothing_and_refuse_the_hub(start, make_user) -> None:
    hub = await start(websocket_enabled=False)
    user = await make_user()
    async with httpx.AsyncClient() as http:
        response = await http.post(f"http://{hub.base}/notifications/hub/negotiate?access_token={user.token()}")
    assert response.json()["availableTransports"] == []
    assert await _refused_status(hub.ws_url(access_token=user.token())) == 404


async def test_alive_and_metrics(start, make_user, db) -> None:
    hub = await start(metrics_token=METRICS_TOKEN)
    user = await make_user()
    client = await HubClient.connect(hub.ws_url(access_token=user.token()))
    await _folder(db, user)
    await client.notification()
    async with httpx.AsyncClient() as http:
        alive = await http.get(f"http://{hub.base}/alive")
        metrics = (await http.get(f"http://{hub.base}/metrics",
                                  headers={"Authorization": f"Bearer {METRICS_TOKEN}"})).text
    assert alive.status_code == 200
    assert 'pgwarden_hub_connections{hub="user"} 1.0' in metrics
    assert "pgwarden_hub_events_total 1.0" in metrics
    assert "pgwarden_hub_messages_sent_total 1.0" in metrics
    assert "pgwarden_hub_event_latency_seconds_count 1.0" in metrics
    assert "pgwarden_hub_listen_reconnects_total 0.0" in metrics
    await client.close()


@pytest.mark.parametrize("path", ["/notifications/hub", "/notifications/anonymous-hub"])
async def test_plain_http_request_to_a_hub_is_426_without_an_error_logged(hub, make_user, caplog, path) -> None:
    user = await make_user()
    token = user.token()
    query = {"access_token": token} if path == "/notifications/hub" else {"Token": str(uuid.uuid4())}
    async with httpx.AsyncClient() as http:
        plain = await http.get(f"http://{hub.base}{path}", params=query)
        # an upgrade request a WebSocket server cannot accept (no Sec-WebSocket-Key)
        broken = await http.get(f"http://{hub.base}{path}", params=query,
                                headers={"Connection": "Upgrade", "Upgrade": "websocket"})
    assert plain.status_code == 426 and plain.json()["object"] == "error"
    assert broken.status_code == 400 and broken.json()["object"] == "error"
    # a refused request is not a server error, and its token stays out of the logs
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert token not in caplog.text
