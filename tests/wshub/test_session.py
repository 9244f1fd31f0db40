"""The hub's Session without sockets: client frames in, byte by byte; events and frames out."""

from __future__ import annotations

import json

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from wshub.codec import HANDSHAKE_REPLY, Close, Invocation, Ping, encode_varint
from wshub.metrics import HubMetrics
from wshub.session import (
    CALL_BURST,
    CALL_WINDOW,
    MAX_INVOCATION_ID,
    CloseReason,
    Closing,
    HandshakeDone,
    MessageReceived,
    Session,
    State,
)

PING = bytes.fromhex("02 91 06")
CLIENT_CLOSE = bytes.fromhex("04 93 07 c0 c2")
MSGPACK_HANDSHAKE = '{"protocol":"messagepack","version":1}\x1e'
JSON_HANDSHAKE = '{"protocol":"json","version":1}\x1e'


def _framed(message: list) -> bytes:
    body = msgpack.packb(message)
    return encode_varint(len(body)) + body


def _open(handshake: str = MSGPACK_HANDSHAKE, max_message_size: int = 65536) -> Session:
    session = Session(max_message_size)
    session.receive(handshake)
    assert session.data_to_send() == [HANDSHAKE_REPLY]
    return session


def _feed_bytewise(session: Session, data: bytes) -> list:
    events = []
    for byte in data:
        events += session.receive(bytes([byte]))
    return events


def _unframed(frame: bytes) -> list:
    """One MessagePack protocol frame, decoded without wshub's codec."""
    assert frame[0] < 0x80, "short messages only"
    assert len(frame) == frame[0] + 1
    return msgpack.unpackb(frame[1:])


# -- handshake ---------------------------------------------------------------------------------


def test_new_session_awaits_the_handshake_and_sends_nothing() -> None:
    session = Session()
    assert session.state is State.AWAITING_HANDSHAKE
    assert session.protocol is None and session.closing is None
    assert session.data_to_send() == []


@pytest.mark.parametrize(("handshake", "name"), [(MSGPACK_HANDSHAKE, "messagepack"), (JSON_HANDSHAKE, "json")])
def test_handshake_opens_the_session_with_the_protocol_and_replies(handshake: str, name: str) -> None:
    session = Session()
    [done] = session.receive(handshake)
    assert isinstance(done, HandshakeDone) and done.protocol.name == name
    assert session.state is State.OPEN and session.protocol is done.protocol
    assert session.data_to_send() == ["{}\x1e"]
    assert session.data_to_send() == []  # each frame is handed out once


def test_handshake_fed_byte_by_byte_replies_only_at_its_end() -> None:
    session = Session()
    data = MSGPACK_HANDSHAKE.encode()
    for byte in data[:-1]:
        assert session.receive(bytes([byte])) == []
        assert session.data_to_send() == []
        assert session.state is State.AWAITING_HANDSHAKE
    [done] = session.receive(data[-1:])
    assert isinstance(done, HandshakeDone)
    assert session.data_to_send() == [HANDSHAKE_REPLY]


def test_handshake_split_over_frames_with_a_ping_behind_it() -> None:
    session = Session()
    assert session.receive('{"protocol":"messa') == []
    events = session.receive(b'gepack","version":1}\x1e' + PING)
    assert [type(e) for e in events] == [HandshakeDone, MessageReceived]
    assert events[1].message == Ping()
    assert session.data_to_send() == [HANDSHAKE_REPLY]


def test_invocation_in_the_handshake_frame_is_answered_after_the_reply() -> None:
    session = Session()
    session.receive(MSGPACK_HANDSHAKE.encode() + _framed([1, {}, "7", "Send", ["x"]]))
    reply, completion = session.data_to_send()
    assert reply == HANDSHAKE_REPLY
    assert _unframed(completion) == [3, {}, "7", 1, "Unknown hub method"]


@pytest.mark.parametrize(("handshake", "error"), [
    ('{"protocol":"xml","version":1}\x1e', "The protocol 'xml' is not supported."),
    ('{"protocol":"json","version":7}\x1e', "The server does not support version 7 of the 'json' protocol."),
    ("not json\x1e", "handshake is not JSON"),
    ('{"version":1}\x1e', "handshake names no protocol"),
])
def test_bad_handshake_is_answered_with_the_error_and_closes_1002(handshake: str, error: str) -> None:
    session = Session()
    [closing] = session.receive(handshake)
    assert closing == Closing(CloseReason.BAD_HANDSHAKE, error)
    assert session.data_to_send() == [json.dumps({"error": error}) + "\x1e"]
    assert session.state is State.CLOSING and session.protocol is None
    assert (closing.code, closing.text) == (1002, error)


def test_handshake_without_a_separator_is_refused_once_too_large() -> None:
    session = Session(max_handshake_size=64)
    assert session.receive("{" + " " * 63) == []
    [closing] = session.receive(" ")
    assert closing.reason is CloseReason.BAD_HANDSHAKE and closing.detail == "handshake too large"


def test_no_handshake_in_time_closes_1008_without_a_word() -> None:
    session = Session()
    session.receive('{"protocol":')
    closing = session.close(CloseReason.NO_HANDSHAKE, "no handshake within 15 s")
    assert closing is not None and (closing.code, closing.text) == (1008, "no handshake within 15 s")
    assert session.data_to_send() == []  # no protocol yet to say it in
    assert session.receive('"json","version":1}\x1e') == []
    assert session.state is State.CLOSING


# -- messages ----------------------------------------------------------------------------------


def test_ping_vector_byte_by_byte_is_one_ping_and_needs_no_answer() -> None:
    session = _open()
    assert session.receive(PING[:1]) == []
    assert session.receive(PING[1:2]) == []
    assert session.receive(PING[2:]) == [MessageReceived(Ping())]
    assert session.data_to_send() == []
    assert session.state is State.OPEN


def test_client_close_vector_byte_by_byte_ends_the_session_without_a_reply() -> None:
    session = _open()
    events = _feed_bytewise(session, CLIENT_CLOSE)
    assert events == [MessageReceived(Close(None, False)), Closing(CloseReason.CLIENT_CLOSED)]
    assert session.state is State.CLOSING
    assert session.data_to_send() == []  # the client asked; it is owed no SignalR Close
    assert (session.closing.code, session.closing.text) == (1000, "closed by the client")


def test_what_follows_a_client_close_is_never_read() -> None:
    session = _open()
    events = session.receive(CLIENT_CLOSE + _framed([1, {}, "7", "Send", []]))
    assert events[-1] == Closing(CloseReason.CLIENT_CLOSED)
    assert session.data_to_send() == []
    assert session.receive(PING) == []


def test_several_messages_in_one_frame_and_one_across_frames() -> None:
    session = _open()
    assert session.receive(PING + PING + PING[:1]) == [MessageReceived(Ping())] * 2
    assert session.receive(PING[1:]) == [MessageReceived(Ping())]


def test_invocation_waiting_for_a_result_gets_an_error_completion() -> None:
    session = _open()
    [received] = session.receive(_framed([1, {}, "7", "Send", ["x"]]))
    assert received == MessageReceived(Invocation("Send", ["x"], "7"))
    [completion] = session.data_to_send()
    assert _unframed(completion) == [3, {}, "7", 1, "Unknown hub method"]


def test_stream_invocation_gets_an_error_completion() -> None:
    session = _open()
    session.receive(_framed([4, {}, "s1", "Stream", []]))
    [completion] = session.data_to_send()
    assert _unframed(completion) == [3, {}, "s1", 1, "Unknown hub method"]


def test_fire_and_forget_invocation_gets_nothing() -> None:
    session = _open()
    session.receive(_framed([1, {}, None, "Send", ["x"]]))
    assert session.data_to_send() == []


def test_json_invocation_is_answered_in_json() -> None:
    session = _open(JSON_HANDSHAKE)
    session.receive('{"type":1,"invocationId":"1","target":"Send","arguments":[]}\x1e{"type":6}\x1e')
    assert session.data_to_send() == ['{"type":3,"invocationId":"1","error":"Unknown hub method"}\x1e']


def test_the_error_completion_never_repeats_what_the_client_sent() -> None:
    session = _open()
    target = "T" * 65000
    session.receive(_framed([1, {}, "7", target, []]))
    [completion] = session.data_to_send()
    assert msgpack.unpackb(completion[1:]) == [3, {}, "7", 1, "Unknown hub method"]
    assert len(completion) < 40


def test_an_invocation_id_longer_than_any_client_sends_is_an_invalid_message() -> None:
    session = _open()
    [closing] = session.receive(_framed([1, {}, "7" * (MAX_INVOCATION_ID + 1), "Send", []]))
    assert closing.reason is CloseReason.INVALID_MESSAGE
    [goodbye] = session.data_to_send()
    assert "7" * 10 not in _unframed(goodbye)[1]
    session = _open()
    session.receive(_framed([1, {}, "7" * MAX_INVOCATION_ID, "Send", []]))
    assert session.state is State.OPEN


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_calls_past_the_allowance_close_the_session() -> None:
    clock = _Clock()
    session = Session(clock=clock)
    session.receive(MSGPACK_HANDSHAKE)
    session.data_to_send()
    for n in range(CALL_BURST):
        assert session.receive(_framed([1, {}, str(n), "Send", []])) == [
            MessageReceived(Invocation("Send", [], str(n)))]
    answers = session.data_to_send()
    assert len(answers) == CALL_BURST
    # pings are no calls: any number of them
    for _ in range(100):
        session.receive(PING)
    events = session.receive(_framed([1, {}, None, "Send", []]))
    assert events[-1] == Closing(CloseReason.TOO_MANY_CALLS)
    [goodbye] = session.data_to_send()
    assert _unframed(goodbye) == [7, "too many invocations", False]
    assert (session.closing.code, session.closing.text) == (1008, "too many invocations")


def test_the_allowance_comes_back_with_time() -> None:
    clock = _Clock()
    session = Session(clock=clock)
    session.receive(MSGPACK_HANDSHAKE)
    for _ in range(CALL_BURST):
        session.receive(_framed([1, {}, None, "Send", []]))
    clock.now += CALL_WINDOW / CALL_BURST  # one call's worth
    session.receive(_framed([1, {}, None, "Send", []]))
    assert session.state is State.OPEN
    clock.now += 10 * CALL_WINDOW  # never more than the burst, however long it was quiet
    for _ in range(CALL_BURST):
        session.receive(_framed([1, {}, None, "Send", []]))
    assert session.state is State.OPEN
    session.receive(_framed([5, {}, "1"]))  # every message but a ping or a close is a call
    assert session.closing == Closing(CloseReason.TOO_MANY_CALLS)


def test_a_deeply_nested_message_is_an_invalid_message() -> None:
    session = _open(JSON_HANDSHAKE)
    [closing] = session.receive('{"type":1,"target":"x","arguments":' + "[" * 5000 + "\x1e")
    assert closing.reason is CloseReason.INVALID_MESSAGE
    deep = Session(max_handshake_size=10000)
    [refused] = deep.receive("[" * 5000 + "\x1e")
    assert refused.reason is CloseReason.BAD_HANDSHAKE


@pytest.mark.parametrize(("handshake", "frame", "reason"), [
    (MSGPACK_HANDSHAKE, b"\x03\xc1\xc1\xc1", CloseReason.INVALID_MESSAGE),       # not MessagePack
    (MSGPACK_HANDSHAKE, b"\x02\x91\x63", CloseReason.INVALID_MESSAGE),           # unknown message type
    (MSGPACK_HANDSHAKE, b"\xff\xff\xff\xff\xff\x01", CloseReason.TOO_BIG),       # absurd length prefix
    (JSON_HANDSHAKE, "nope\x1e", CloseReason.INVALID_MESSAGE),                  # not JSON
    (JSON_HANDSHAKE, '{"type":1,"target":3}\x1e', CloseReason.INVALID_MESSAGE),  # not an invocation
])
def test_bad_bytes_close_with_the_reason_after_a_signalr_close(handshake: str, frame: bytes | str,
                                                                reason: CloseReason) -> None:
    session = _open(handshake)
    [closing] = session.receive(frame)
    assert closing.reason is reason and closing.detail
    [goodbye] = session.data_to_send()
    message = _unframed(goodbye) if isinstance(goodbye, bytes) else json.loads(goodbye[:-1])
    if isinstance(message, dict):
        message = [message["type"], message.get("error"), message["allowReconnect"]]
    assert message == [7, f"invalid message: {closing.detail}", False]
    assert closing.code == (1009 if reason is CloseReason.TOO_BIG else 1003)
    assert session.state is State.CLOSING


def test_oversized_msgpack_message_is_refused_from_its_length_prefix() -> None:
    session = _open(max_message_size=1024)
    [closing] = session.receive(encode_varint(1025))  # not a byte of the body has arrived
    assert closing.reason is CloseReason.TOO_BIG
    assert "1025" in closing.detail


def test_oversized_json_record_is_refused_before_its_end_arrives() -> None:
    session = _open(JSON_HANDSHAKE, max_message_size=1024)
    assert session.receive('{"type":6,"x":"' + "y" * 1000) == []
    [closing] = session.receive("y" * 100)
    assert closing.reason is CloseReason.TOO_BIG


@given(chunks=st.lists(st.integers(1, 8), min_size=1, max_size=60))
def test_any_chunking_gives_the_same_conversation(chunks: list[int]) -> None:
    stream = (MSGPACK_HANDSHAKE.encode() + PING + _framed([1, {}, "1", "A", []]) + PING
              + _framed([1, {}, None, "B", []]) + _framed([1, {}, "2", "C", []]) + CLIENT_CLOSE + PING)
    whole = Session()
    expected_events = whole.receive(stream)
    expected_frames = whole.data_to_send()

    session = Session()
    events, frames, at, sizes = [], [], 0, iter(chunks)
    while at < len(stream):
        size = next(sizes, 8)
        events += session.receive(stream[at:at + size])
        frames += session.data_to_send()
        at += size
    assert events == expected_events
    assert frames == expected_frames
    assert frames[0] == HANDSHAKE_REPLY and len(frames) == 3
    assert session.closing == Closing(CloseReason.CLIENT_CLOSED)


# -- the hub ends it ----------------------------------------------------------------------------


@pytest.mark.parametrize(("reason", "detail", "goodbye", "code", "text"), [
    (CloseReason.LOGGED_OUT, None, [7, "logged out", False], 1008, "logged out"),
    (CloseReason.SHUTDOWN, None, [7, None, True], 1001, "server shutting down"),
    (CloseReason.TOO_SLOW, None, [7, None, True], 1013, "too far behind; reconnect and sync"),
    (CloseReason.EXPIRED, None, [7, None, True], 1008, "session expired"),
    (CloseReason.INTERNAL_ERROR, None, [7, "internal error", False], 1011, "internal error"),
])
def test_hub_close_says_why_in_a_signalr_close_then_gives_the_close_code(
        reason: CloseReason, detail: str | None, goodbye: list, code: int, text: str) -> None:
    session = _open()
    closing = session.close(reason, detail)
    assert closing is not None and (closing.code, closing.text) == (code, text)
    [frame] = session.data_to_send()
    assert _unframed(frame) == goodbye
    assert session.state is State.CLOSING


def test_shutdown_goodbye_is_the_close_vector_with_reconnect_allowed() -> None:
    session = _open()
    session.close(CloseReason.SHUTDOWN)
    # the client's close vector 04 93 07 c0 c2 with allowReconnect true
    assert session.data_to_send() == [bytes.fromhex("04 93 07 c0 c3")]


def test_first_reason_wins_and_a_second_close_sends_nothing() -> None:
    session = _open()
    assert session.close(CloseReason.LOGGED_OUT) is not None
    session.data_to_send()
    assert session.close(CloseReason.SHUTDOWN) is None
    assert session.data_to_send() == []
    assert session.closing == Closing(CloseReason.LOGGED_OUT)


def test_connection_closed_ends_it_as_lost_unless_a_reason_came_first() -> None:
    lost = _open()
    assert lost.connection_closed() == Closing(CloseReason.DISCONNECTED)
    assert lost.state is State.CLOSED and lost.receive(PING) == []

    logged_out = _open()
    logged_out.close(CloseReason.LOGGED_OUT)
    assert logged_out.connection_closed() == Closing(CloseReason.LOGGED_OUT)
    assert logged_out.data_to_send() == []  # nothing can be written any more


# -- close reasons -------------------------------------------------------------------------------


def test_every_close_reason_has_its_own_label_a_code_and_a_text() -> None:
    labels = [reason.label for reason in CloseReason]
    assert labels == [reason.name.lower() for reason in CloseReason]
    assert len(set(labels)) == len(labels)
    for reason in CloseReason:
        assert reason.code in {1000, 1001, 1002, 1003, 1006, 1008, 1009, 1011, 1013} and reason.text


def test_close_text_fits_a_close_frame_whatever_the_detail() -> None:
    closing = Closing(CloseReason.BAD_HANDSHAKE, "The protocol '" + "é" * 200 + "' is not supported.")
    assert len(closing.text.encode()) <= 123
    assert closing.text.startswith("The protocol 'é")


def test_metrics_count_refusals_and_drops_by_label_and_client_ends_not_at_all() -> None:
    metrics = HubMetrics()
    for reason in CloseReason:
        metrics.session_ended(reason)

    def count(name: str, label: str) -> float:
        return metrics.registry.get_sample_value(name, {"reason": label}) or 0.0

    for reason in CloseReason:
        refused = count("pgwarden_hub_refused_connections_total", reason.label)
        dropped = count("pgwarden_hub_dropped_connections_total", reason.label)
        assert (refused, dropped) == ((1, 0) if reason.refused else (0, 0) if reason.by_client else (0, 1))
    assert {r for r in CloseReason if r.refused} == {CloseReason.NO_HANDSHAKE, CloseReason.BAD_HANDSHAKE}
