"""Hostile clients over real sockets: floods of invocations, oversized messages, deep nesting and
internal failures end that one connection, hold little memory, and leave no token in any log."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import uuid

import msgpack
import pytest
import websockets

from tests.wshub.support import HubClient, eventually
from wshub.codec import encode_varint
from wshub.connection import Connection
from wshub.session import CALL_BURST, Session
from wshub.websocket import WebSocket

PING = bytes.fromhex("02 91 06")


def _framed(message: list) -> bytes:
    body = msgpack.packb(message)
    return encode_varint(len(body)) + body


async def _until_closed(client: HubClient, within: float = 15.0) -> list:
    """Every message the client gets until its socket closes, which must happen within a bound."""
    messages = []
    with pytest.raises(websockets.ConnectionClosed):
        async with asyncio.timeout(within):
            while True:
                messages.append(await client.message(within))
    return messages


# -- floods ---------------------------------------------------------------------------------------


async def test_a_client_that_keeps_invoking_is_closed_and_never_hears_its_own_text(hub, make_user) -> None:
    user = await make_user()
    client = await HubClient.connect(hub.ws_url(access_token=user.token()))
    frame = _framed([1, {}, "1", "T" * 65000, []])
    sent = 0
    with pytest.raises(websockets.ConnectionClosed):
        for _ in range(250):
            await client.ws.send(frame)
            sent += 1
            await asyncio.sleep(0)
    messages = await _until_closed(client)
    assert messages == [[3, {}, "1", 1, "Unknown hub method"]] * CALL_BURST + [[7, "too many invocations", False]]
    assert client.ws.close_code == 1008 and client.ws.close_reason == "too many invocations"
    assert hub.metric("pgwarden_hub_dropped_connections_total", reason="too_many_calls") == 1


async def test_the_anonymous_hub_takes_no_message_larger_than_a_handshake(hub) -> None:
    client = await HubClient.connect(hub.ws_url("/notifications/anonymous-hub", Token=str(uuid.uuid4())))
    await client.ws.send(PING)  # what it needs still passes
    await client.ws.send(_framed([1, {}, "1", "T" * 5000, []]))
    with pytest.raises(websockets.ConnectionClosed):
        await asyncio.wait_for(client.ws.recv(), 5)
    assert client.ws.close_code == 1009
    await eventually(lambda: hub.app.ctx.registry.slots == 0, "the slot was given back")


async def test_nothing_of_a_closed_connection_stays_in_memory(hub, make_user) -> None:
    user = await make_user()
    clients = [await HubClient.connect(hub.ws_url(access_token=user.token()), protocol)
               for protocol in ("messagepack", "json")]
    clients.append(await HubClient.connect(hub.ws_url("/notifications/anonymous-hub", Token=str(uuid.uuid4()))))
    registry = hub.app.ctx.registry
    # ids, not references (both are slotted, without weak references): no new one is made meanwhile
    kept = {id(c) for c in registry} | {id(c.session) for c in registry}
    assert len(kept) == 6
    await clients[0].ws.send(_framed([1, {}, "1", "T" * 60000, []]))
    await clients[0].message()
    for client in clients:
        await client.close()
    await eventually(lambda: registry.slots == 0 and len(registry) == 0, "every connection left")

    def collected() -> bool:
        gc.collect()
        return not any(isinstance(o, Connection | Session) and id(o) in kept for o in gc.get_objects())

    await eventually(collected, "every connection and session was freed")


@pytest.mark.parametrize("path", ["/notifications/hub", "/notifications/anonymous-hub"])
async def test_what_a_client_sent_after_its_session_ended_is_let_go_with_the_connection(
        hub, make_user, path) -> None:
    # a connection must be let go by reference counting alone, with what the client sent and the
    # hub never read: a cycle would keep it (and those bytes) until a full garbage collection,
    # which a quiet process may not run for hours; so none runs here
    query = {"access_token": (await make_user()).token()} if path.endswith("/hub") else {"Token": str(uuid.uuid4())}
    gc.disable()
    try:
        for _ in range(3):
            client = await HubClient.connect(hub.ws_url(path, **query))
            # forty messages in one write: the hub closes at the eleventh call, the rest received
            for n in range(40):
                client.ws.protocol.send_binary(_framed([1, {}, str(n), "T" * 300, []]))
            await client.ws.send(PING)
            await _until_closed(client)
        await eventually(lambda: hub.app.ctx.registry.slots == 0, "every slot was given back")

        def sockets_alive() -> list[WebSocket]:
            return [o for o in gc.get_objects() if type(o) is WebSocket]  # type(): a dead weak proxy would raise

        await eventually(lambda: not sockets_alive(), "no socket outlives its connection", timeout=15)
    finally:
        gc.enable()


# -- malformed input and failures: a close with a reason, no traceback, no token in the log -----


def _logged(caplog: pytest.LogCaptureFixture) -> tuple[str, list[logging.LogRecord]]:
    """What the server side logged (the test's own websockets client logs its request line)."""
    records = [r for r in caplog.records if not r.name.startswith("websockets.client")]
    formatter = logging.Formatter()
    return "\n".join(formatter.format(r) for r in records), records


def _assert_no_token(text: str, token: str) -> None:
    assert "access_token" not in text
    for part in token.split("."):
        assert part not in text


async def test_hostile_input_is_a_protocol_error_and_logs_neither_traceback_nor_token(
        hub, make_user, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    user = await make_user()
    token = user.token()
    url = hub.ws_url(access_token=token)
    # handshakes: deeply nested, not text
    for handshake in ("[" * 5000 + "\x1e", b"\xff\xfe\x00" * 10 + b"\x1e"):
        async with websockets.connect(url) as ws:
            await ws.send(handshake)
            reply = await asyncio.wait_for(ws.recv(), 5)
            assert "error" in json.loads(reply.rstrip("\x1e"))
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            assert ws.close_code == 1002
    # messages: deeply nested in either protocol
    deep_json = '{"type":1,"invocationId":"1","target":"x","arguments":' + "[" * 5000 + "\x1e"
    deep_msgpack = bytes.fromhex("95 01 80 c0 a1 78") + b"\x91" * 5000 + b"\xc0"
    for protocol, frame in (("json", deep_json), ("messagepack", encode_varint(len(deep_msgpack)) + deep_msgpack)):
        client = await HubClient.connect(url, protocol)
        await client.ws.send(frame)
        [goodbye] = await _until_closed(client)
        assert client.ws.close_code == 1003, goodbye
    text, records = _logged(caplog)
    _assert_no_token(text, token)
    assert [r for r in records if r.levelno >= logging.WARNING] == []
    assert "Traceback" not in text


async def test_an_internal_error_ends_that_connection_only_and_its_log_has_no_url(
        hub, make_user, db, caplog, monkeypatch) -> None:
    caplog.set_level(logging.DEBUG)
    receive = Session.receive

    def failing(self: Session, data: bytes | str) -> list:
        if data == b"boom":
            raise RuntimeError("a bug in the hub")
        return receive(self, data)

    monkeypatch.setattr(Session, "receive", failing)
    user = await make_user()
    token = user.token()
    broken = await HubClient.connect(hub.ws_url(access_token=token))
    other = await HubClient.connect(hub.ws_url(access_token=user.token()))
    await broken.ws.send(b"boom")
    assert await _until_closed(broken) == [[7, "internal error", False]]
    assert broken.ws.close_code == 1011
    # before the handshake too
    async with websockets.connect(hub.ws_url(access_token=token)) as early:
        await early.send(b"boom")
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(early.recv(), 5)
        assert early.close_code == 1011
    folder = await db.fetchval("INSERT INTO folders (user_id, name) VALUES ($1, 'x') RETURNING id::text", user.id)
    assert (await other.notification())["Payload"]["Id"] == folder
    await eventually(lambda: hub.app.ctx.registry.slots == 1, "the failed connections gave their slots back")
    text, records = _logged(caplog)
    _assert_no_token(text, token)
    errors = [r for r in records if r.levelno >= logging.ERROR]
    assert len(errors) == 2 and all(r.name == "wshub" and r.exc_info for r in errors)
    assert "Exception occurred while handling uri" not in text
    assert hub.metric("pgwarden_hub_dropped_connections_total", reason="internal_error") == 2
    await other.close()


async def test_a_failure_before_the_upgrade_is_a_500_whose_log_has_no_url(hub, make_user, caplog, monkeypatch) -> None:
    caplog.set_level(logging.DEBUG)

    def failing(*args: object) -> None:
        raise RuntimeError("a bug in the token check")

    monkeypatch.setattr("wshub.admission.check_token", failing)
    monkeypatch.setattr("wshub.door.check_token", failing)
    user = await make_user()
    token = user.token()
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(hub.ws_url(access_token=token))
    assert refused.value.response.status_code == 500
    text, records = _logged(caplog)
    _assert_no_token(text, token)
    assert any(r.levelno >= logging.ERROR and r.exc_info for r in records)
    assert "/notifications/hub" in text  # the path says where; the query string stays out
