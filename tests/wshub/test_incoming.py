"""The client's WebSocket frames as the hub reads them, byte by byte and without sockets: RFC 6455's
own examples, what a client built on the websockets library sends, and input a server must refuse."""

from __future__ import annotations

import pytest
from websockets.client import ClientProtocol
from websockets.protocol import State
from websockets.uri import parse_uri

from wshub.incoming import CloseFrame, FrameReader, Ping, Pong, Violation

MASK = bytes.fromhex("37 fa 21 3d")


def _client() -> ClientProtocol:
    """The client side of an open connection, as the websockets library keeps it: it masks."""
    return ClientProtocol(parse_uri("ws://hub.invalid/"), state=State.OPEN, max_size=None)


def _masked(first: int, payload: bytes, mask: bytes = MASK) -> bytes:
    """One client frame: ``first`` is the FIN, RSV and opcode byte."""
    length = len(payload)
    if length < 126:
        header = bytes((first, 0x80 | length))
    elif length < 65536:
        header = bytes((first, 0x80 | 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((first, 0x80 | 127)) + length.to_bytes(8, "big")
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _refused(data: bytes, max_size: int = 65536) -> Violation:
    with pytest.raises(Violation) as refused:
        FrameReader(max_size).feed(data)
    return refused.value


# -- RFC 6455 §5.7's examples ---------------------------------------------------------------------


def test_rfc_6455_a_single_frame_masked_text_message() -> None:
    # "0x81 0x85 0x37 0xfa 0x21 0x3d 0x7f 0x9f 0x4d 0x51 0x58 (contains "Hello")"
    assert FrameReader(100).feed(bytes.fromhex("81 85 37 fa 21 3d 7f 9f 4d 51 58")) == ["Hello"]


def test_rfc_6455_a_masked_pong_in_answer_to_a_ping() -> None:
    # "0x8a 0x85 0x37 0xfa 0x21 0x3d 0x7f 0x9f 0x4d 0x51 0x58"
    assert FrameReader(100).feed(bytes.fromhex("8a 85 37 fa 21 3d 7f 9f 4d 51 58")) == [Pong(b"Hello")]


@pytest.mark.parametrize("frame", [
    "81 05 48 65 6c 6c 6f",  # a single-frame unmasked text message
    "01 03 48 65 6c",  # the first fragment of an unmasked text message
    "89 05 48 65 6c 6c 6f",  # an unmasked Ping
])
def test_rfc_6455_unmasked_frames_are_a_server_s_own_and_refused_from_a_client(frame: str) -> None:
    # §5.1: "The server MUST close the connection upon receiving a frame that is not masked"
    refused = _refused(bytes.fromhex(frame))
    assert refused.code == 1002


def test_rfc_6455_a_fragmented_text_message_masked_with_a_ping_between_its_fragments() -> None:
    # §5.7's "Hel" + "lo", as a client sends them (masked); §5.4: control frames may come between
    data = _masked(0x01, b"Hel") + _masked(0x89, b"?") + _masked(0x80, b"lo")
    assert FrameReader(100).feed(data) == [Ping(b"?"), "Hello"]


def test_rfc_6455_sizes_at_the_length_encodings_edges() -> None:
    # 125 bytes in the first byte, 126 and 65535 in two more, 65536 in eight more
    sizes = [0, 125, 126, 65535, 65536]
    data = b"".join(_masked(0x82, bytes([n % 251]) * n) for n in sizes)
    assert FrameReader(65536).feed(data) == [bytes([n % 251]) * n for n in sizes]


# -- what a real client sends --------------------------------------------------------------------


def _from_client() -> tuple[bytes, list[object]]:
    client = _client()
    client.send_text(b"{\"protocol\":\"json\",\"version\":1}\x1e")
    client.send_binary(bytes(range(256)) * 300)
    client.send_ping(b"p")
    client.send_text("d\u00e9j\u00e0 vu \U0001F511".encode(), fin=False)
    client.send_continuation(b"", fin=False)
    client.send_continuation(b"!", fin=True)
    client.send_pong(b"")
    client.send_close(1000, "bye")
    expected = ['{"protocol":"json","version":1}\x1e', bytes(range(256)) * 300, Ping(b"p"),
                "d\u00e9j\u00e0 vu \U0001F511!", Pong(b""), CloseFrame(1000, "bye")]
    return b"".join(client.data_to_send()), expected


def test_what_the_websockets_library_sends_is_read_whole() -> None:
    data, expected = _from_client()
    assert FrameReader(1 << 20).feed(data) == expected


@pytest.mark.parametrize("piece", [1, 2, 3, 7, 100, 4096])
def test_the_same_bytes_in_pieces_of_any_size_read_the_same(piece: int) -> None:
    data, expected = _from_client()
    reader = FrameReader(1 << 20)
    received = []
    for start in range(0, len(data), piece):
        received += reader.feed(data[start:start + piece])
    assert received == expected


def test_nothing_is_read_after_a_close() -> None:
    reader = FrameReader(100)
    assert reader.feed(_masked(0x88, b"") + _masked(0x81, b"late")) == [CloseFrame(None, "")]
    assert reader.feed(_masked(0x81, b"later")) == []


# -- limits -------------------------------------------------------------------------------------


def test_a_message_over_the_limit_is_refused_from_its_header_before_its_payload_arrives() -> None:
    reader = FrameReader(1000)
    header = bytes((0x82, 0x80 | 126)) + (1001).to_bytes(2, "big")
    with pytest.raises(Violation) as refused:
        reader.feed(header)
    assert refused.value.code == 1009


def test_a_message_at_the_limit_passes() -> None:
    assert FrameReader(1000).feed(_masked(0x82, b"x" * 1000)) == [b"x" * 1000]


def test_fragments_count_together_against_the_limit() -> None:
    reader = FrameReader(1000)
    assert reader.feed(_masked(0x02, b"x" * 600)) == []
    with pytest.raises(Violation) as refused:
        reader.feed(_masked(0x00, b"x" * 401)[:4])  # the continuation's header alone
    assert refused.value.code == 1009


def test_a_huge_announced_length_is_refused_not_awaited() -> None:
    refused = _refused(bytes((0x82, 0xFF)) + (2**62).to_bytes(8, "big"))
    assert refused.code == 1009
    assert _refused(bytes((0x82, 0xFF)) + (2**63).to_bytes(8, "big")).code == 1002


def test_what_waits_for_the_rest_of_a_frame_is_that_frame_alone() -> None:
    reader = FrameReader(65536)
    frame = _masked(0x82, b"y" * 5000)
    assert reader.feed(_masked(0x81, b"a") + frame[:3000]) == ["a"]
    assert reader.feed(frame[3000:]) == [b"y" * 5000]
    assert reader.feed(b"") == []


# -- malformed input: the close code a server answers with ---------------------------------------


@pytest.mark.parametrize("data, code", [
    (_masked(0xC1, b"compressed?"), 1002),  # RSV1: no extension was negotiated
    (_masked(0xA1, b"x"), 1002),  # RSV2
    (_masked(0x91, b"x"), 1002),  # RSV3
    (_masked(0x83, b"x"), 1002),  # reserved data opcode
    (_masked(0x8B, b"x"), 1002),  # reserved control opcode
    (_masked(0x09, b"x"), 1002),  # a fragmented ping
    (bytes((0x89, 0x80 | 126)) + (126).to_bytes(2, "big") + MASK + b"p" * 126, 1002),  # a control frame over 125
    (_masked(0x80, b"x"), 1002),  # a continuation with nothing to continue
    (_masked(0x01, b"a") + _masked(0x81, b"b"), 1002),  # a new message inside a fragmented one
    (_masked(0x81, b"\xff\xfe"), 1007),  # text that is not UTF-8
    (_masked(0x01, "\u00e9".encode()[:1]) + _masked(0x80, b"x"), 1007),  # UTF-8 cut between fragments
    (_masked(0x88, b"\x03"), 1002),  # a close with a one-byte payload
    (_masked(0x88, (1005).to_bytes(2, "big")), 1002),  # a code that never goes on the wire
    (_masked(0x88, (999).to_bytes(2, "big")), 1002),
    (_masked(0x88, (2000).to_bytes(2, "big")), 1002),
    (_masked(0x88, (5000).to_bytes(2, "big")), 1002),
    (_masked(0x88, (1000).to_bytes(2, "big") + b"\xc3"), 1007),  # a reason that is not UTF-8
])
def test_malformed_input_is_refused_with_the_code_to_close_with(data: bytes, code: int) -> None:
    refused = _refused(data)
    assert refused.code == code
    assert refused.reason.isascii() and "x" not in refused.reason.split()  # fixed text, never the client's


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4999])
def test_every_code_a_client_may_send_is_read(code: int) -> None:
    client = _client()
    client.send_close(code, "r")
    [data] = client.data_to_send()
    assert FrameReader(100).feed(data) == [CloseFrame(code, "r")]



def test_a_large_frame_that_comes_a_byte_at_a_time_is_read_whole() -> None:
    # a client may send one byte per packet: what waits is appended to in place, not copied per byte
    frame = _masked(0x82, b"z" * 65536)
    reader = FrameReader(65536)
    received = []
    for at in range(len(frame)):
        received += reader.feed(frame[at:at + 1])
    assert received == [b"z" * 65536]
