"""The hub's outgoing WebSocket frames, byte by byte: RFC 6455's own examples, and what a client
built on the websockets library reads from them."""

from __future__ import annotations

import pytest
from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from wshub.framing import frame


def _client() -> ClientProtocol:
    """The client side of an open connection, as the websockets library keeps it."""
    return ClientProtocol(parse_uri("ws://hub.invalid/"), state=State.OPEN, max_size=None)


def _read(data: bytes) -> list[tuple[Opcode, bytes, bool]]:
    client = _client()
    client.receive_data(data)
    return [(event.opcode, bytes(event.data), event.fin) for event in client.events_received()]


def test_rfc_6455_single_frame_unmasked_text() -> None:
    # §5.7: "A single-frame unmasked text message"
    assert frame("Hello") == bytes.fromhex("81 05 48 65 6c 6c 6f")


def test_rfc_6455_256_bytes_binary_in_a_single_unmasked_frame() -> None:
    # §5.7: "0x82 0x7E 0x0100 [256 bytes of binary data]"
    data = bytes(range(256))
    assert frame(data) == bytes.fromhex("82 7e 01 00") + data


def test_rfc_6455_64_kib_binary_in_a_single_unmasked_frame() -> None:
    # §5.7: "0x82 0x7F 0x0000000000010000 [65536 bytes of binary data]"
    data = b"\xa5" * 65536
    assert frame(data) == bytes.fromhex("82 7f 00 00 00 00 00 01 00 00") + data


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_every_length_form_reads_back_as_one_binary_message(length: int) -> None:
    data = bytes(i % 251 for i in range(length))
    assert _read(frame(data)) == [(Opcode.BINARY, data, True)]


@pytest.mark.parametrize("text", ["", '{"type":6}\x1e', "é€😀" * 50, "x" * 126])
def test_text_reads_back_as_one_text_message_in_utf_8(text: str) -> None:
    # the length is the encoded one: non-ASCII text is longer in bytes than in characters
    assert _read(frame(text)) == [(Opcode.TEXT, text.encode(), True)]


def test_frames_written_back_to_back_read_as_separate_messages() -> None:
    stream = frame(b"\x02\x91\x06") + frame("a" * 300) + frame(b"z" * 70000)
    client = _client()
    # as TCP may cut it: a few bytes at a time
    for start in range(0, len(stream), 977):
        client.receive_data(stream[start:start + 977])
    events = client.events_received()
    assert [(e.opcode, len(e.data)) for e in events] == [(Opcode.BINARY, 3), (Opcode.TEXT, 300), (Opcode.BINARY, 70000)]
    assert client.state is State.OPEN  # no protocol error: unmasked server frames are what it expects
