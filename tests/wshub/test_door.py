"""The hub's own reading of plain upgrades (wshub/door.py) answers as Sanic does: the same status,
body, count and log line for every refusal; anything it does not read whole goes to Sanic."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import uuid

import pytest

from tests.wshub.support import HubClient, eventually
from wshub.door import HubProtocol
from wshub.turns import Turns

UPGRADE = ("Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n")


def _request(hub, target: str, extra: str = "") -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: {hub.base}\r\n{UPGRADE}{extra}\r\n".encode()


async def _ask(hub, request: bytes, *, split: bool, after: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of the answer; ``split``: the head in two packets, which the hub's
    protocol leaves to Sanic (so both readers are asked the same)."""
    host, port = hub.base.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        if split:
            writer.write(request[:25])
            await writer.drain()
            await asyncio.sleep(0.2)
            writer.write(request[25:] + after)
        else:
            writer.write(request + after)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        status_line, *lines = head.decode().rstrip("\r\n").split("\r\n")
        headers = {name.lower(): value for name, value in (line.split(": ", 1) for line in lines)}
        length = int(headers.get("content-length", "0"))
        body = await asyncio.wait_for(reader.readexactly(length), 10)
        if after:  # what the hub answered to the bytes sent behind the upgrade request
            body = await asyncio.wait_for(reader.read(4096), 10)
        return int(status_line.split(" ")[1]), headers, body
    finally:
        writer.close()


def _count_handed_to_sanic(monkeypatch: pytest.MonkeyPatch) -> list[None]:
    """Each connection the hub's protocol leaves to Sanic, as it goes."""
    handed: list[None] = []
    to_sanic = HubProtocol._to_sanic

    def counted(protocol: HubProtocol) -> None:
        handed.append(None)
        to_sanic(protocol)

    monkeypatch.setattr(HubProtocol, "_to_sanic", counted)
    return handed


def _refusal_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("refused hub connection")]


def _access_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    # without the duration, which differs
    return [r.getMessage().rsplit(" ", 1)[0] for r in caplog.records if r.name == "pgwarden.access"]


def _stale_stamp_token(user) -> str:
    """Signed, but with a stamp the account no longer has: refused after its row was read."""
    return user.token(sstamp=str(uuid.uuid4()))


@pytest.mark.parametrize("case", ["no token", "bad token", "stale stamp", "bad auth request id", "disabled",
                                  "anonymous hub full", "per-user cap"])
async def test_a_refusal_is_the_same_from_the_hub_s_reader_and_from_sanic(start, make_user, caplog, monkeypatch,
                                                                         case) -> None:
    caplog.set_level(logging.DEBUG)
    to_sanic = _count_handed_to_sanic(monkeypatch)
    settings = {"disabled": {"websocket_enabled": False}, "anonymous hub full": {"hub_max_anonymous_connections": 0},
                "per-user cap": {"hub_max_connections_per_user": 1}}.get(case, {})
    hub = await start(**settings)
    user = await make_user()
    token = user.token()
    kept = None
    if case == "per-user cap":
        kept = await HubClient.connect(hub.ws_url(access_token=token))
    target = {"no token": "/notifications/hub",
              "bad token": "/notifications/hub?access_token=eyJhbGciOiJSUzI1NiJ9.e30.c2ln",
              "stale stamp": f"/notifications/hub?access_token={_stale_stamp_token(user)}",
              "bad auth request id": "/notifications/anonymous-hub?Token=not-an-id",
              "anonymous hub full": f"/notifications/anonymous-hub?Token={uuid.uuid4()}",
              }.get(case, f"/notifications/hub?access_token={token}")
    caplog.clear()
    own = await _ask(hub, _request(hub, target), split=False)
    own_logged, own_access = _refusal_lines(caplog), _access_lines(caplog)
    assert to_sanic == []
    caplog.clear()
    sanic = await _ask(hub, _request(hub, target), split=True)
    sanic_logged, sanic_access = _refusal_lines(caplog), _access_lines(caplog)
    assert len(to_sanic) == 1

    assert own[0] == sanic[0] and own[0] in (400, 401, 404, 429, 503)
    assert own[2] == sanic[2] and json.loads(own[2])["object"] == "error"
    for name in ("content-type", "cache-control", "x-content-type-options", "content-security-policy"):
        assert own[1][name] == sanic[1][name]
    assert own[1]["connection"] == sanic[1]["connection"] == "close"  # "Connection: Upgrade" asked no keep-alive
    assert own_logged == sanic_logged and len(own_logged) == 1
    assert own_access == sanic_access and len(own_access) == 1
    label = {400: "bad_request", 401: "unauthorized", 404: "disabled", 429: "limit", 503: "full"}[own[0]]
    assert hub.metric("pgwarden_hub_refused_connections_total", reason=label) == 2
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "access_token" not in text and token.split(".")[2] not in text
    if kept is not None:
        await kept.close()


async def test_an_upgrade_in_one_packet_or_several_is_let_in_the_same(hub, make_user, caplog, monkeypatch) -> None:
    caplog.set_level(logging.INFO, logger="pgwarden.access")
    to_sanic = _count_handed_to_sanic(monkeypatch)
    user = await make_user()
    for split in (False, True):
        status, headers, _ = await _ask(hub, _request(hub, f"/notifications/hub?access_token={user.token()}"),
                                        split=split)
        assert status == 101
        assert headers["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert _access_lines(caplog) == ['127.0.0.1 "GET /notifications/hub" 101'] * 2
    assert len(to_sanic) == 1  # the split one
    await eventually(lambda: hub.app.ctx.registry.slots == 0, "both sockets gave their slots back")


async def test_what_a_client_sends_behind_its_upgrade_request_is_read_by_its_socket(hub, make_user) -> None:
    user = await make_user()
    payload = b'{"protocol":"json","version":1}\x1e'
    mask = os.urandom(4)
    frame = bytes((0x81, 0x80 | len(payload))) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    status, _, answer = await _ask(hub, _request(hub, f"/notifications/hub?access_token={user.token()}"),
                                   split=False, after=frame)
    assert status == 101
    assert answer == bytes((0x81, 3)) + b"{}\x1e"  # the SignalR handshake's reply


async def test_a_head_too_large_for_the_hub_s_reader_is_sanic_s_to_answer(hub, make_user, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    user = await make_user()
    token = user.token()
    padding = f"X-Padding: {'a' * 9000}\r\n"
    status, _, body = await _ask(hub, _request(hub, f"/notifications/hub?access_token={token}", padding), split=False)
    assert status == 413  # Sanic's limit on a request head: a client error, no 500
    assert token.split(".")[2] not in "\n".join(r.getMessage() for r in caplog.records)
    # just under the hub's reader's limit: read and let in
    padding = f"X-Padding: {'a' * 6000}\r\n"
    status, _, _ = await _ask(hub, _request(hub, f"/notifications/hub?access_token={token}", padding), split=False)
    assert status == 101
    await eventually(lambda: hub.app.ctx.registry.slots == 0, "its slot given back")


@pytest.mark.parametrize("request_bytes", [
    b"GET /notifications/hub HTTP/1.1\r\nno colon here\r\n\r\n",
    b"GET /notifications/hub\xff HTTP/1.1\r\n\r\n",
    b"GET /notifications/hub HTTP/1.0\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    b"GET  /notifications/hub HTTP/1.1\r\n\r\n",
    b"GET /notifications/hub?access_token=x HTTP/1.1\r\nContent-Length: 5\r\n" + UPGRADE.encode() + b"\r\nhello",
    b"GET /notifications/hub?access_token=x HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
])
async def test_odd_requests_are_answered_by_sanic_with_a_client_error(hub, request_bytes, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    whole = await _ask(hub, request_bytes, split=False)
    assert 400 <= whole[0] < 500
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


_ANONYMOUS = f"GET /notifications/anonymous-hub?Token={uuid.UUID(int=7)}"


@pytest.mark.parametrize("request_bytes", [
    # bytes in the target that Sanic's parser refuses
    f"{_ANONYMOUS}&z=\x00 HTTP/1.1\r\n{UPGRADE}\r\n".encode(),
    f"GET /notifications/hub?access_token=s3cr3tvalue&z=\x00 HTTP/1.1\r\n{UPGRADE}\r\n".encode(),
    f"{_ANONYMOUS}&z=\t HTTP/1.1\r\n{UPGRADE}\r\n".encode(),
    # a head of exactly Sanic's limit (413)
    (lambda head: head + b"X-Padding: " + b"a" * (8192 - len(head) - len("X-Padding: ")) + b"\r\n\r\n")(
        f"{_ANONYMOUS} HTTP/1.1\r\n{UPGRADE}".encode()),
])
async def test_what_sanic_refuses_the_hub_s_reader_does_not_let_in(hub, request_bytes, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    try:
        status = (await _ask(hub, request_bytes, split=False))[0]
    except asyncio.IncompleteReadError:
        status = None  # closed without an answer
    assert status is None or 400 <= status < 500
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "s3cr3tvalue" not in "\n".join(r.getMessage() + str(r.exc_info) for r in caplog.records)


async def test_steps_run_in_order_a_failing_one_alone_lost(caplog) -> None:
    turns = Turns(budget=0.0)  # one step per turn of the loop
    ran: list[int] = []

    def step(n: int) -> None:
        if n == 2:
            raise RuntimeError("a failing step")
        ran.append(n)

    for n in range(5):
        turns.add(lambda n=n: step(n))
    await eventually(lambda: len(turns) == 0, "every step ran")
    assert ran == [0, 1, 3, 4]
    assert any("failed" in r.getMessage() and r.exc_info for r in caplog.records)


async def test_a_cancelled_step_does_not_stop_the_steps_after_it(caplog) -> None:
    turns = Turns(budget=0.0)
    ran: list[int] = []

    def step(n: int) -> None:
        if n == 1:
            raise asyncio.CancelledError  # what a cancelled token check's result() raises
        ran.append(n)

    for n in range(3):
        turns.add(lambda n=n: step(n))
    await eventually(lambda: len(turns) == 0, "every step ran")
    turns.add(lambda: ran.append(3))
    await eventually(lambda: ran == [0, 2, 3], "a step added afterwards ran too")
