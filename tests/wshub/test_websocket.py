"""The hub's own WebSocket protocol over a real socket: the upgrade's answer, pings, closes from
either side, and input that breaks the protocol, read by a raw TCP client and the websockets
library's client-side parser."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from websockets.client import ClientProtocol
from websockets.frames import Close, Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from tests.wshub.support import FAST, HubClient, eventually
from wshub.app import HubTuning
from wshub.wire import accept_key

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
HANDSHAKE = b'{"protocol":"json","version":1}\x1e'


class RawClient:
    """A TCP connection that upgrades by hand, sends frames made by the websockets library's client
    (masked), and reads what the hub sends with the same library."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.protocol = ClientProtocol(parse_uri("ws://hub.invalid/"), state=State.OPEN, max_size=None)

    @classmethod
    async def upgrade(cls, hub, behind: bytes = b"") -> tuple[RawClient, bytes]:
        host, port = hub.base.split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(f"GET /notifications/anonymous-hub?Token={uuid.uuid4()} HTTP/1.1\r\nHost: {hub.base}\r\n"
                     f"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                     f"Sec-WebSocket-Key: {KEY}\r\n\r\n".encode() + behind)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        return cls(reader, writer), head

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def events(self, count: int) -> list:
        events: list = []
        while len(events) < count:
            data = await asyncio.wait_for(self.reader.read(65536), 5)
            if not data:
                break
            self.protocol.receive_data(data)
            events += self.protocol.events_received()
        return events

    async def at_eof(self, within: float = 5.0) -> bool:
        """True once the hub closed the TCP connection."""
        data = await asyncio.wait_for(self.reader.read(), within)
        self.protocol.receive_data(data)
        self.protocol.receive_eof()
        return True


def _frame(client: ClientProtocol, opcode: Opcode, data: bytes, fin: bool = True) -> bytes:
    client.send_frame(Frame(opcode, data, fin))
    return b"".join(client.data_to_send())


async def test_the_upgrade_answer_carries_the_key_s_accept(hub) -> None:
    client, head = await RawClient.upgrade(hub)
    assert head.startswith(b"HTTP/1.1 101 ")
    # RFC 6455 §1.3's example
    assert accept_key(KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert b"\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in head
    client.writer.close()


async def test_a_handshake_sent_behind_the_upgrade_request_is_read(hub) -> None:
    client = ClientProtocol(parse_uri("ws://hub.invalid/"), state=State.OPEN)
    client.send_text(HANDSHAKE)
    raw, _ = await RawClient.upgrade(hub, behind=b"".join(client.data_to_send()))
    [reply] = await raw.events(1)
    assert reply.opcode is Opcode.TEXT and reply.data == b"{}\x1e"
    raw.writer.close()


async def test_a_ping_is_answered_with_a_pong_carrying_its_payload(hub) -> None:
    raw, _ = await RawClient.upgrade(hub)
    raw.send(_frame(raw.protocol, Opcode.TEXT, HANDSHAKE) + _frame(raw.protocol, Opcode.PING, b"are you there"))
    reply, pong = await raw.events(2)
    assert reply.data == b"{}\x1e"
    assert pong.opcode is Opcode.PONG and pong.data == b"are you there"
    raw.writer.close()


async def test_a_close_from_the_client_is_answered_with_its_code_and_the_hub_closes_tcp(hub) -> None:
    raw, _ = await RawClient.upgrade(hub)
    raw.send(_frame(raw.protocol, Opcode.TEXT, HANDSHAKE))
    await raw.events(1)
    raw.send(_frame(raw.protocol, Opcode.CLOSE, Close(4000, "done").serialize()))
    [answer] = await raw.events(1)
    assert answer.opcode is Opcode.CLOSE and Close.parse(answer.data).code == 4000
    assert await raw.at_eof()
    await eventually(lambda: hub.app.ctx.registry.slots == 0 and len(hub.app.ctx.registry) == 0, "the slot came back")
    assert hub.metric("pgwarden_hub_dropped_connections_total", reason="disconnected") == 0


@pytest.mark.parametrize("frame, code", [
    (bytes.fromhex("81 05 48 65 6c 6c 6f"), 1002),  # unmasked (RFC 6455 §5.7's server frame)
    (bytes.fromhex("c1 80 00 00 00 00"), 1002),  # RSV1 with no extension negotiated
    (bytes.fromhex("81 82 00 00 00 00 ff fe"), 1007),  # text that is not UTF-8
    (bytes.fromhex("82 fe 10 01 00 00 00 00"), 1009),  # announces 4097 bytes to the anonymous hub
])
async def test_input_that_breaks_the_protocol_closes_with_its_code_and_gives_the_slot_back(
        hub, frame: bytes, code: int) -> None:
    raw, _ = await RawClient.upgrade(hub)
    raw.send(_frame(raw.protocol, Opcode.TEXT, HANDSHAKE))
    await raw.events(1)
    raw.send(frame)
    [answer] = await raw.events(1)
    assert answer.opcode is Opcode.CLOSE and Close.parse(answer.data).code == code
    assert await raw.at_eof()
    await eventually(lambda: hub.app.ctx.registry.slots == 0 and len(hub.app.ctx.registry) == 0, "the slot came back")


async def test_a_client_that_never_answers_the_hub_s_close_is_cut_off(start) -> None:
    hub = await start(hub_handshake_timeout=1)
    raw, _ = await RawClient.upgrade(hub)
    [close] = await raw.events(1)  # no handshake in time: the hub closes, the client stays silent
    assert Close.parse(close.data).code == 1008
    assert await raw.at_eof(within=15)  # within the close timeout (10 s), not never
    await eventually(lambda: hub.app.ctx.registry.slots == 0, "the slot came back")


async def test_a_client_that_answers_no_ping_is_taken_as_gone(start) -> None:
    # a link that died without a FIN or RST: only silence tells
    hub = await start(tuning=HubTuning(ping_interval=0.2, ingress=FAST.ingress, shutdown_grace=1.0))
    raw, _ = await RawClient.upgrade(hub)
    raw.send(_frame(raw.protocol, Opcode.TEXT, HANDSHAKE))
    events = await raw.events(1)
    while not any(e.opcode is Opcode.CLOSE for e in events):  # the raw client answers nothing
        events += await raw.events(1)
    assert [e.opcode for e in events if e.opcode is not Opcode.TEXT][:2] == [Opcode.PING, Opcode.PING]
    assert Close.parse(events[-1].data).code == 1011
    await eventually(lambda: hub.app.ctx.registry.slots == 0, "the slot came back")


async def test_a_client_that_answers_pings_stays(start) -> None:
    hub = await start(tuning=HubTuning(ping_interval=0.2, ingress=FAST.ingress, shutdown_grace=1.0))
    client = await HubClient.connect(hub.ws_url("/notifications/anonymous-hub", Token=str(uuid.uuid4())), "json")
    await asyncio.sleep(1.5)  # seven ticks: the websockets library answers each Ping with a Pong
    assert len(hub.app.ctx.registry) == 1
    await client.close()
