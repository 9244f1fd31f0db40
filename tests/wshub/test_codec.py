"""The SignalR codec: bytes in, messages out, against the vectors in docs/protocol.md (1.13 Test vectors)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from db.events import Event, PushType
from wshub.codec import (
    HANDSHAKE_REPLY,
    Ack,
    CancelInvocation,
    Close,
    CodecError,
    Completion,
    FramingError,
    HandshakeError,
    HandshakeReader,
    Invocation,
    JsonProtocol,
    MessageError,
    MessagePackProtocol,
    MessageReader,
    Ping,
    Sequence,
    StreamInvocation,
    StreamItem,
    decode_varint,
    encode_varint,
    handshake_error_reply,
)
from wshub.notifications import auth_request_response, receive_message, receive_message_argument

MSGPACK = MessagePackProtocol()
JSON = JsonProtocol()

FOLDER_UPDATE_VECTOR = bytes.fromhex(
    """
    c1 01 95 01 80 c0 ae 52 65 63 65 69 76 65 4d 65 73 73 61 67 65 91 83 a9 43 6f 6e 74 65 78 74
    49 64 d9 24 34 66 31 62 32 61 39 65 2d 35 64 32 63 2d 34 65 38 61 2d 39 61 35 39 2d 30 63 36
    66 33 62 37 66 39 64 31 31 a4 54 79 70 65 08 a7 50 61 79 6c 6f 61 64 83 a2 49 64 d9 24 30 62
    37 63 31 63 33 65 2d 32 66 34 61 2d 34 62 38 65 2d 39 64 33 66 2d 36 61 35 65 34 63 33 62 32
    61 31 30 a6 55 73 65 72 49 64 d9 24 38 65 36 64 32 66 31 61 2d 33 62 34 63 2d 34 64 35 65 2d
    38 66 36 61 2d 37 62 38 63 39 64 30 65 31 66 32 61 ac 52 65 76 69 73 69 6f 6e 44 61 74 65 d7
    ff 1d 53 53 00 69 29 c7 00
    """
)
VECTOR_DATE = datetime(2025, 11, 28, 16, 0, 0, 123000, tzinfo=timezone.utc)
VECTOR_EVENT = Event(
    type=PushType.SYNC_FOLDER_UPDATE,
    user_id="8e6d2f1a-3b4c-4d5e-8f6a-7b8c9d0e1f2a",
    org_id=None,
    item_id="0b7c1c3e-2f4a-4b8e-9d3f-6a5e4c3b2a10",
    date=VECTOR_DATE,
    device_identifier="4f1b2a9e-5d2c-4e8a-9a59-0c6f3b7f9d11",
)


# -- vectors ---------------------------------------------------------------------------------


def test_ping_encodes_to_the_vector() -> None:
    assert MSGPACK.encode(Ping()) == bytes.fromhex("02 91 06")


def test_close_without_error_encodes_to_the_vector() -> None:
    assert MSGPACK.encode(Close()) == bytes.fromhex("04 93 07 c0 c2")


def test_folder_update_notification_encodes_to_the_195_byte_vector() -> None:
    encoded = MSGPACK.encode(receive_message(VECTOR_EVENT))
    assert len(FOLDER_UPDATE_VECTOR) == 195
    assert encoded == FOLDER_UPDATE_VECTOR


def test_folder_update_vector_decodes_to_the_notification() -> None:
    [message] = MessageReader(MSGPACK).feed(FOLDER_UPDATE_VECTOR)
    assert message == Invocation(
        "ReceiveMessage",
        [{
            "ContextId": "4f1b2a9e-5d2c-4e8a-9a59-0c6f3b7f9d11",
            "Type": 8,
            "Payload": {
                "Id": "0b7c1c3e-2f4a-4b8e-9d3f-6a5e4c3b2a10",
                "UserId": "8e6d2f1a-3b4c-4d5e-8f6a-7b8c9d0e1f2a",
                "RevisionDate": VECTOR_DATE,
            },
        }],
    )


@pytest.mark.parametrize(("value", "encoded"), [(0, "00"), (127, "7f"), (128, "80 01"), (200, "c8 01"),
                                                (16383, "ff 7f"), (16384, "80 80 01")])
def test_varint_vectors(value: int, encoded: str) -> None:
    assert encode_varint(value) == bytes.fromhex(encoded)
    assert decode_varint(bytes.fromhex(encoded)) == (value, len(bytes.fromhex(encoded)))


def test_json_notification_has_iso_dates_and_record_separator() -> None:
    text = JSON.encode(receive_message(VECTOR_EVENT))
    assert text.endswith("\x1e") and text.count("\x1e") == 1
    assert json.loads(text[:-1]) == {
        "type": 1,
        "target": "ReceiveMessage",
        "arguments": [{
            "ContextId": "4f1b2a9e-5d2c-4e8a-9a59-0c6f3b7f9d11",
            "Type": 8,
            "Payload": {
                "Id": "0b7c1c3e-2f4a-4b8e-9d3f-6a5e4c3b2a10",
                "UserId": "8e6d2f1a-3b4c-4d5e-8f6a-7b8c9d0e1f2a",
                "RevisionDate": "2025-11-28T16:00:00.123Z",
            },
        }],
    }


def test_json_ping_and_close() -> None:
    assert JSON.encode(Ping()) == '{"type":6}\x1e'
    assert json.loads(JSON.encode(Close("bye", True))[:-1]) == {"type": 7, "error": "bye", "allowReconnect": True}


# -- payload shapes ---------------------------------------------------------------------------


def _event(push_type: PushType, item: str | None = "0b7c1c3e-2f4a-4b8e-9d3f-6a5e4c3b2a10",
           context: str | None = None, org: str | None = None) -> Event:
    return Event(push_type, "8e6d2f1a-3b4c-4d5e-8f6a-7b8c9d0e1f2a", org, item, VECTOR_DATE, context)


@pytest.mark.parametrize("push_type", [PushType.SYNC_CIPHER_UPDATE, PushType.SYNC_CIPHER_CREATE,
                                       PushType.SYNC_LOGIN_DELETE, PushType.SYNC_CIPHER_DELETE])
def test_cipher_payload_has_every_key_with_nil_for_absent(push_type: PushType) -> None:
    argument = receive_message_argument(_event(push_type))
    assert argument == {
        "ContextId": None,
        "Type": int(push_type),
        "Payload": {"Id": "0b7c1c3e-2f4a-4b8e-9d3f-6a5e4c3b2a10", "UserId": "8e6d2f1a-3b4c-4d5e-8f6a-7b8c9d0e1f2a",
                    "OrganizationId": None, "CollectionIds": None, "RevisionDate": VECTOR_DATE},
    }
    # nil on the wire, not an omitted key
    raw = msgpack.unpackb(MSGPACK.encode(receive_message(_event(push_type)))[2:], timestamp=3)
    assert raw[4][0]["Payload"]["OrganizationId"] is None and "ContextId" in raw[4][0]


@pytest.mark.parametrize("push_type", [PushType.SYNC_FOLDER_DELETE, PushType.SYNC_FOLDER_CREATE,
                                       PushType.SYNC_SEND_CREATE, PushType.SYNC_SEND_UPDATE, PushType.SYNC_SEND_DELETE])
def test_folder_and_send_payload_keys(push_type: PushType) -> None:
    assert set(receive_message_argument(_event(push_type))["Payload"]) == {"Id", "UserId", "RevisionDate"}


@pytest.mark.parametrize("push_type", [PushType.SYNC_CIPHERS, PushType.SYNC_VAULT, PushType.SYNC_ORG_KEYS,
                                       PushType.SYNC_SETTINGS, PushType.LOG_OUT])
def test_user_level_payload_is_user_id_and_date(push_type: PushType) -> None:
    argument = receive_message_argument(_event(push_type, item=None, context="device-1"))
    assert argument == {"ContextId": "device-1", "Type": int(push_type),
                        "Payload": {"UserId": "8e6d2f1a-3b4c-4d5e-8f6a-7b8c9d0e1f2a", "Date": VECTOR_DATE}}


def test_auth_request_payload_and_anonymous_response() -> None:
    assert receive_message_argument(_event(PushType.AUTH_REQUEST))["Payload"] == {
        "Id": "0b7c1c3e-2f4a-4b8e-9d3f-6a5e4c3b2a10", "UserId": "8e6d2f1a-3b4c-4d5e-8f6a-7b8c9d0e1f2a"}
    response = auth_request_response(_event(PushType.AUTH_REQUEST_RESPONSE))
    assert response.target == "AuthRequestResponseRecieved"
    assert response.arguments == [{
        "Type": 16,
        "Payload": {"Id": "0b7c1c3e-2f4a-4b8e-9d3f-6a5e4c3b2a10", "UserId": "8e6d2f1a-3b4c-4d5e-8f6a-7b8c9d0e1f2a"},
        "UserId": "8e6d2f1a-3b4c-4d5e-8f6a-7b8c9d0e1f2a",
    }]


# -- handshake --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["messagepack", "json"])
def test_handshake_selects_protocol(name: str) -> None:
    request = HandshakeReader().feed(json.dumps({"protocol": name, "version": 1}) + "\x1e")
    assert request is not None and request.protocol.name == name and request.version == 1


def test_handshake_in_pieces_with_a_message_behind_it() -> None:
    reader = HandshakeReader()
    assert reader.feed('{"protocol":"messa') is None
    request = reader.feed(b'gepack","version":1}\x1e\x02\x91\x06')
    assert request is not None and request.protocol.name == "messagepack"
    assert MessageReader(request.protocol).feed(reader.remainder) == [Ping()]


@pytest.mark.parametrize(("text", "reason"), [
    ('{"protocol":"xml","version":1}\x1e', "The protocol 'xml' is not supported."),
    ('{"protocol":"json","version":99}\x1e', "version 99"),
    ('{"version":1}\x1e', "no protocol"),
    ('{"protocol":"json"}\x1e', "no protocol version"),
    ('{"protocol":"json","version":"1"}\x1e', "no protocol version"),
    ('[1,2]\x1e', "not a JSON object"),
    ('hello\x1e', "not JSON"),
    ('\xff\xfe\x1e', "not JSON"),
])
def test_bad_handshakes_are_refused_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(HandshakeError, match=reason):
        HandshakeReader().feed(text)


def test_handshake_without_separator_is_bounded() -> None:
    with pytest.raises(HandshakeError, match="too large"):
        HandshakeReader(max_size=100).feed("{" * 200)


def test_handshake_replies() -> None:
    assert HANDSHAKE_REPLY == "{}\x1e"
    assert json.loads(handshake_error_reply('no "such" protocol')[:-1]) == {"error": 'no "such" protocol'}


# -- incremental reading ----------------------------------------------------------------------


def test_msgpack_reader_takes_several_messages_and_partial_ones() -> None:
    reader = MessageReader(MSGPACK)
    stream = MSGPACK.encode(Ping()) + FOLDER_UPDATE_VECTOR + MSGPACK.encode(Close("x"))
    assert reader.feed(stream[:1]) == []
    assert reader.feed(stream[1:4]) == [Ping()]
    assert reader.feed(stream[4:100]) == []
    messages = reader.feed(stream[100:])
    assert [m.type for m in messages] == [1, 7] and messages[1] == Close("x")


def test_json_reader_takes_several_messages_and_partial_ones() -> None:
    reader = MessageReader(JSON)
    assert reader.feed('{"type":6}\x1e{"type":1,"target":"Se') == [Ping()]
    assert reader.feed('nd","arguments":[1]}\x1e') == [Invocation("Send", [1])]


@pytest.mark.parametrize("data", [
    b"\x01\xc1",                     # reserved MessagePack byte
    b"\x01\x06",                     # an integer, not an array
    b"\x01\x90",                     # empty array
    b"\x02\x91\x63",                 # unknown type 99
    b"\x02\x91\xa1",                 # truncated string inside a record
    b"\x03\x92\x06\x01",             # ping with a field
    b"\x04\x93\x07\x05\xc2",         # close error not a string
    b"\x04\x93\x07\xc0\x01",         # allowReconnect not a boolean
    b"\x05\x94\x01\x80\xc0\x01",     # invocation too short
    bytes.fromhex("06 95 01 80 c0 01 90"),  # target not a string
    bytes.fromhex("09 95 01 81 01 02 c0 a1 78 90"),  # header key not a string
    bytes.fromhex("07 95 04 80 c0 a1 78 90"),  # stream invocation without id
    bytes.fromhex("06 94 03 80 a1 78 09"),  # completion with unknown result kind
    bytes.fromhex("03 92 08 ff"),  # ack with negative id
])
def test_malformed_msgpack_messages_are_rejected(data: bytes) -> None:
    with pytest.raises(MessageError):
        MessageReader(MSGPACK).feed(data)


def test_overlong_varint_is_rejected() -> None:
    with pytest.raises(FramingError):
        MessageReader(MSGPACK).feed(b"\xff\xff\xff\xff\xff\x01")


def test_oversized_record_is_rejected_before_buffering() -> None:
    with pytest.raises(FramingError, match="exceeds"):
        MessageReader(MSGPACK, max_size=1000).feed(encode_varint(5000) + b"\x00")
    with pytest.raises(FramingError, match="exceeds"):
        MessageReader(JSON, max_size=10).feed('{"type":6,"padding":"xxxxx"')


@pytest.mark.parametrize("text", [
    "nope\x1e", "[6]\x1e", '{"type":"6"}\x1e', '{"type":42}\x1e', '{"type":1,"target":5,"arguments":[]}\x1e',
    '{"type":1,"target":"x"}\x1e', '{"type":1,"target":"x","arguments":[],"headers":{"a":1}}\x1e',
    '{"type":3}\x1e', '{"type":3,"invocationId":"1","error":"e","result":1}\x1e', '{"type":7,"error":3}\x1e',
    '{"type":8,"sequenceId":-1}\x1e', '{"type":1,"target":"x","arguments":[],"invocationId":7}\x1e',
])
def test_malformed_json_messages_are_rejected(text: str) -> None:
    with pytest.raises(MessageError):
        MessageReader(JSON).feed(text)


def test_codec_errors_share_one_base_with_a_reason() -> None:
    with pytest.raises(CodecError) as caught:
        MessageReader(JSON).feed("nope\x1e")
    assert caught.value.reason == "not JSON" and str(caught.value) == "not JSON"


# -- hostile nesting: every malformed input is a CodecError ------------------------------------------


DEEP = 5000  # far past the interpreter's recursion limit


def test_deeply_nested_handshake_is_a_handshake_error() -> None:
    with pytest.raises(HandshakeError):
        HandshakeReader(max_size=2 * DEEP).feed("[" * DEEP + "\x1e")
    with pytest.raises(HandshakeError):
        HandshakeReader(max_size=2 * DEEP).feed('{"protocol":"json","version":1,"x":' + "[" * DEEP + "\x1e")


def test_deeply_nested_json_message_is_a_message_error() -> None:
    with pytest.raises(MessageError):
        MessageReader(JSON).feed('{"type":1,"target":"x","arguments":' + "[" * DEEP + "\x1e")
    with pytest.raises(MessageError):
        MessageReader(JSON).feed("[" * DEEP + "\x1e")


def test_deeply_nested_msgpack_message_is_a_message_error() -> None:
    body = bytes.fromhex("95 01 80 c0 a1 78") + b"\x91" * DEEP + b"\xc0"
    with pytest.raises(MessageError):
        MessageReader(MSGPACK).feed(encode_varint(len(body)) + body)


def test_any_failure_while_parsing_a_record_is_a_codec_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise TypeError("what a decoder may raise on input it never expected")

    monkeypatch.setattr(json, "loads", broken)
    monkeypatch.setattr(msgpack, "unpackb", broken)
    with pytest.raises(MessageError):
        MessageReader(JSON).feed("{}\x1e")
    with pytest.raises(MessageError):
        MessageReader(MSGPACK).feed(b"\x01\x90")
    with pytest.raises(HandshakeError):
        HandshakeReader().feed('{"protocol":"json","version":1}\x1e')


# -- round trips (property-based) ----------------------------------------------------------------

_text = st.text(max_size=20)
_headers = st.dictionaries(_text, _text, max_size=3)
_ids = st.lists(_text, max_size=3)
_dates = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2400, 1, 1),
                      timezones=st.just(timezone.utc))
_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | _text
_values = st.recursive(_scalars | _dates, lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(_text, inner, max_size=3), max_leaves=10)
_json_values = st.recursive(_scalars.filter(lambda v: not isinstance(v, int) or abs(v) < 2**53),
                            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
                            max_leaves=10)


def _messages(values: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(
        st.builds(Invocation, _text, st.lists(values, max_size=3), st.none() | _text, _headers, _ids),
        st.builds(StreamInvocation, _text, _text, st.lists(values, max_size=3), _headers, _ids),
        st.builds(StreamItem, _text, values, _headers),
        st.builds(Completion, _text, error=_text, headers=_headers),
        st.builds(Completion, _text, result=values, has_result=st.just(True), headers=_headers),
        st.builds(Completion, _text, headers=_headers),
        st.builds(CancelInvocation, _text, _headers),
        st.just(Ping()),
        st.builds(Close, st.none() | _text, st.booleans()),
        st.builds(Ack, st.integers(0, 2**63)),
        st.builds(Sequence, st.integers(0, 2**63)),
    )


@given(st.lists(_messages(_values), min_size=1, max_size=4), st.integers(1, 50))
def test_msgpack_round_trip_in_any_chunking(messages: list, chunk: int) -> None:
    stream = b"".join(MSGPACK.encode(m) for m in messages)
    reader = MessageReader(MSGPACK, max_size=1 << 20)
    decoded = []
    for start in range(0, len(stream), chunk):
        decoded += reader.feed(stream[start:start + chunk])
    assert decoded == messages


@given(st.lists(_messages(_json_values), min_size=1, max_size=4), st.integers(1, 50))
def test_json_round_trip_in_any_chunking(messages: list, chunk: int) -> None:
    stream = "".join(JSON.encode(m) for m in messages).encode()
    reader = MessageReader(JSON, max_size=1 << 20)
    decoded = []
    for start in range(0, len(stream), chunk):
        decoded += reader.feed(stream[start:start + chunk])
    assert decoded == messages


@given(st.integers(0, 2**35 - 1))
def test_varint_round_trip(value: int) -> None:
    encoded = encode_varint(value)
    assert decode_varint(encoded + b"\x99") == (value, len(encoded))
    assert decode_varint(encoded[:-1]) is None


@given(st.binary(max_size=64))
def test_arbitrary_bytes_never_escape_as_other_errors(data: bytes) -> None:
    for protocol in (MSGPACK, JSON):
        try:
            MessageReader(protocol).feed(data)
        except CodecError:
            pass
    try:
        HandshakeReader().feed(data + b"\x1e")
    except CodecError:
        pass
