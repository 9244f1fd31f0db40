"""The SignalR wire format, as bytes in and messages out: no sockets, no event loop.

A connection starts with a JSON handshake ending in the record separator ``\\x1e``; the server
answers ``{}\\x1e`` or ``{"error": ...}\\x1e``. After that every message is either

- MessagePack hub protocol: ``varint(length) + msgpack(array)`` in binary frames, or
- JSON hub protocol: ``json(object) + "\\x1e"`` in text frames.

One WebSocket frame may carry several messages, and a message may span frames: the readers here
keep what is incomplete until the rest arrives.

Exceptions::

    CodecError             (ValueError) bytes from a peer that are not valid SignalR
    ├── HandshakeError     the handshake request is malformed or unsupported
    ├── FramingError       a length prefix or record is malformed or too large
    └── MessageError       a complete record is not a valid hub message

Whatever a decoder raises on a peer's bytes (RecursionError on deep nesting included) comes out
as one of these: bad input is the peer's error, never a crash of the hub.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, ClassVar, Protocol

import msgpack

__all__ = [
    "HANDSHAKE_REPLY",
    "RECORD_SEPARATOR",
    "PROTOCOLS",
    "Ack",
    "CancelInvocation",
    "Close",
    "CodecError",
    "Completion",
    "FramingError",
    "HandshakeError",
    "HandshakeReader",
    "HandshakeRequest",
    "HubProtocol",
    "Invocation",
    "JsonProtocol",
    "Message",
    "MessageError",
    "MessagePackProtocol",
    "MessageReader",
    "MessageType",
    "Ping",
    "Sequence",
    "StreamInvocation",
    "StreamItem",
    "decode_varint",
    "encode_varint",
    "handshake_error_reply",
]

RECORD_SEPARATOR = "\x1e"
_RS = b"\x1e"
HANDSHAKE_REPLY = "{}" + RECORD_SEPARATOR

#: A varint of 5 bytes already covers 2**35: more is never a sane length.
_MAX_VARINT_BYTES = 5
#: Versions the clients send: 1, and 2 from @microsoft/signalr 8 on (same messages).
_SUPPORTED_VERSIONS = frozenset({1, 2})


# ---------------------------------------------------------------------------------------------
# Exceptions
# ---------------------------------------------------------------------------------------------


class CodecError(ValueError):
    """Raised when bytes from a peer are not valid SignalR; ``reason`` is safe to send back."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


class HandshakeError(CodecError):
    """Raised when a handshake request is malformed or asks for an unsupported protocol."""


class FramingError(CodecError):
    """Raised when a length prefix or record separator framing is malformed or too large."""


class MessageError(CodecError):
    """Raised when a complete record does not hold a valid hub message."""


# ---------------------------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------------------------


class MessageType(enum.IntEnum):
    INVOCATION = 1
    STREAM_ITEM = 2
    COMPLETION = 3
    STREAM_INVOCATION = 4
    CANCEL_INVOCATION = 5
    PING = 6
    CLOSE = 7
    ACK = 8
    SEQUENCE = 9


@dataclass(frozen=True, slots=True)
class Invocation:
    target: str
    arguments: list[Any]
    invocation_id: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    stream_ids: list[str] = field(default_factory=list)
    type: ClassVar[MessageType] = MessageType.INVOCATION


@dataclass(frozen=True, slots=True)
class StreamInvocation:
    invocation_id: str
    target: str
    arguments: list[Any]
    headers: dict[str, str] = field(default_factory=dict)
    stream_ids: list[str] = field(default_factory=list)
    type: ClassVar[MessageType] = MessageType.STREAM_INVOCATION


@dataclass(frozen=True, slots=True)
class StreamItem:
    invocation_id: str
    item: Any
    headers: dict[str, str] = field(default_factory=dict)
    type: ClassVar[MessageType] = MessageType.STREAM_ITEM


@dataclass(frozen=True, slots=True)
class Completion:
    """A call's end: an error, a result, or neither (``has_result`` tells a None result apart)."""

    invocation_id: str
    error: str | None = None
    result: Any = None
    has_result: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    type: ClassVar[MessageType] = MessageType.COMPLETION


@dataclass(frozen=True, slots=True)
class CancelInvocation:
    invocation_id: str
    headers: dict[str, str] = field(default_factory=dict)
    type: ClassVar[MessageType] = MessageType.CANCEL_INVOCATION


@dataclass(frozen=True, slots=True)
class Ping:
    type: ClassVar[MessageType] = MessageType.PING


@dataclass(frozen=True, slots=True)
class Close:
    error: str | None = None
    allow_reconnect: bool = False
    type: ClassVar[MessageType] = MessageType.CLOSE


@dataclass(frozen=True, slots=True)
class Ack:
    sequence_id: int
    type: ClassVar[MessageType] = MessageType.ACK


@dataclass(frozen=True, slots=True)
class Sequence:
    sequence_id: int
    type: ClassVar[MessageType] = MessageType.SEQUENCE


Message = (
    Invocation | StreamInvocation | StreamItem | Completion | CancelInvocation | Ping | Close | Ack
    | Sequence
)


# ---------------------------------------------------------------------------------------------
# Handshake
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HandshakeRequest:
    protocol: HubProtocol
    version: int


def handshake_error_reply(reason: str) -> str:
    """The reply to a refused handshake; the peer is closed right after it."""
    return json.dumps({"error": reason}) + RECORD_SEPARATOR


class HandshakeReader:
    """Collects the handshake record, which may arrive in pieces, and parses it.

    ``feed`` returns None until the record is complete; bytes after the separator belong to the
    hub protocol and are kept in ``remainder``.
    """

    def __init__(self, max_size: int = 4096) -> None:
        self._buffer = bytearray()
        self._max_size = max_size
        self.remainder = b""

    def feed(self, data: str | bytes) -> HandshakeRequest | None:
        self._buffer += data.encode() if isinstance(data, str) else data
        end = self._buffer.find(_RS)
        if end < 0:
            if len(self._buffer) > self._max_size:
                raise HandshakeError("handshake too large")
            return None
        record = bytes(self._buffer[:end])
        self.remainder = bytes(self._buffer[end + 1 :])
        self._buffer.clear()
        try:
            return _parse_handshake(record)
        except CodecError:
            raise
        except Exception:  # see the module docstring
            raise HandshakeError("malformed handshake") from None


def _parse_handshake(record: bytes) -> HandshakeRequest:
    try:
        body = json.loads(record)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the stack
        raise HandshakeError("handshake is not JSON") from None
    if not isinstance(body, dict):
        raise HandshakeError("handshake is not a JSON object")
    name, version = body.get("protocol"), body.get("version")
    if not isinstance(name, str):
        raise HandshakeError("handshake names no protocol")
    if type(version) is not int:
        raise HandshakeError("handshake names no protocol version")
    protocol = PROTOCOLS.get(name)
    if protocol is None:
        raise HandshakeError(f"The protocol '{name}' is not supported.")
    if version not in _SUPPORTED_VERSIONS:
        raise HandshakeError(f"The server does not support version {version} of the '{name}' protocol.")
    return HandshakeRequest(protocol, version)


# ---------------------------------------------------------------------------------------------
# Varint length prefix (MessagePack protocol)
# ---------------------------------------------------------------------------------------------


def encode_varint(value: int) -> bytes:
    """7 bits per byte, least significant group first, 0x80 on every byte but the last."""
    if value < 0:
        raise ValueError("a length is never negative")
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def decode_varint(data: bytes | bytearray, start: int = 0) -> tuple[int, int] | None:
    """(value, bytes used) of the varint at start, or None while it is incomplete."""
    value = 0
    for used in range(_MAX_VARINT_BYTES):
        if start + used >= len(data):
            return None
        byte = data[start + used]
        value |= (byte & 0x7F) << (7 * used)
        if not byte & 0x80:
            return value, used + 1
    raise FramingError("length prefix longer than 5 bytes")


# ---------------------------------------------------------------------------------------------
# Hub protocols
# ---------------------------------------------------------------------------------------------


class HubProtocol(Protocol):
    name: str

    def encode(self, message: Message) -> bytes | str: ...

    def split(self, buffer: bytearray, max_size: int) -> list[bytes]: ...

    def parse(self, record: bytes) -> Message: ...


class MessageReader:
    """Turns a peer's frames into messages: partial records wait for the rest, several per frame
    are all returned. A record larger than max_size is refused before it is buffered whole."""

    def __init__(self, protocol: HubProtocol, max_size: int = 65536) -> None:
        self.protocol = protocol
        self._max_size = max_size
        self._buffer = bytearray()

    def feed(self, data: str | bytes) -> list[Message]:
        self._buffer += data.encode() if isinstance(data, str) else data
        return [self._parse(record) for record in self.protocol.split(self._buffer, self._max_size)]

    def _parse(self, record: bytes) -> Message:
        try:
            return self.protocol.parse(record)
        except CodecError:
            raise
        except Exception:  # see the module docstring
            raise MessageError("malformed message") from None


def _require(condition: bool, reason: str) -> None:
    if not condition:
        raise MessageError(reason)


def _is_str_map(value: object) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def _is_str_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


class MessagePackProtocol:
    """``[type, headers, ...]`` arrays behind a varint length; dates as Timestamp ext -1."""

    name = "messagepack"

    # -- encoding ---------------------------------------------------------------------------

    def encode(self, message: Message) -> bytes:
        body = msgpack.packb(self._as_array(message), datetime=True, use_bin_type=True)
        return encode_varint(len(body)) + body

    @staticmethod
    def _as_array(message: Message) -> list[Any]:
        match message:
            case Invocation() | StreamInvocation():
                array = [int(message.type), message.headers, message.invocation_id, message.target,
                         message.arguments]
                return array + [message.stream_ids] if message.stream_ids else array
            case StreamItem():
                return [2, message.headers, message.invocation_id, message.item]
            case Completion():
                if message.error is not None:
                    return [3, message.headers, message.invocation_id, 1, message.error]
                if message.has_result:
                    return [3, message.headers, message.invocation_id, 3, message.result]
                return [3, message.headers, message.invocation_id, 2]
            case CancelInvocation():
                return [5, message.headers, message.invocation_id]
            case Ping():
                return [6]
            case Close():
                return [7, message.error, message.allow_reconnect]
            case Ack():
                return [8, message.sequence_id]
            case Sequence():
                return [9, message.sequence_id]
        raise TypeError(f"not a hub message: {message!r}")

    # -- decoding ---------------------------------------------------------------------------

    def split(self, buffer: bytearray, max_size: int) -> list[bytes]:
        records: list[bytes] = []
        while buffer:
            prefix = decode_varint(buffer)
            if prefix is None:
                break
            length, used = prefix
            if length > max_size:
                raise FramingError(f"message of {length} bytes exceeds the limit of {max_size}")
            if len(buffer) < used + length:
                break
            records.append(bytes(buffer[used : used + length]))
            del buffer[: used + length]
        return records

    def parse(self, record: bytes) -> Message:
        try:
            array = msgpack.unpackb(record, raw=False, timestamp=3, strict_map_key=True)
        except Exception:  # msgpack raises several unrelated types for bad bytes
            raise MessageError("not a MessagePack value") from None
        _require(isinstance(array, list) and len(array) >= 1, "a message is a MessagePack array")
        kind = array[0]
        _require(type(kind) is int, "message type is not an integer")
        if kind in (MessageType.INVOCATION, MessageType.STREAM_INVOCATION):
            _require(len(array) in (5, 6), "invocation needs 5 or 6 fields")
            headers, invocation_id, target, arguments = array[1:5]
            stream_ids = array[5] if len(array) == 6 else []
            _require(_is_str_map(headers), "headers are not a string map")
            _require(isinstance(target, str), "target is not a string")
            _require(isinstance(arguments, list), "arguments are not an array")
            _require(_is_str_list(stream_ids), "stream ids are not strings")
            if kind == MessageType.INVOCATION:
                _require(invocation_id is None or isinstance(invocation_id, str), "bad invocation id")
                return Invocation(target, arguments, invocation_id, headers, stream_ids)
            _require(isinstance(invocation_id, str), "stream invocation needs an invocation id")
            return StreamInvocation(invocation_id, target, arguments, headers, stream_ids)
        if kind == MessageType.STREAM_ITEM:
            _require(len(array) == 4, "stream item needs 4 fields")
            _require(_is_str_map(array[1]) and isinstance(array[2], str), "bad stream item")
            return StreamItem(array[2], array[3], array[1])
        if kind == MessageType.COMPLETION:
            return self._completion(array)
        if kind == MessageType.CANCEL_INVOCATION:
            _require(len(array) == 3, "cancel invocation needs 3 fields")
            _require(_is_str_map(array[1]) and isinstance(array[2], str), "bad cancel invocation")
            return CancelInvocation(array[2], array[1])
        if kind == MessageType.PING:
            _require(len(array) == 1, "ping has no fields")
            return Ping()
        if kind == MessageType.CLOSE:
            _require(len(array) in (2, 3), "close needs 2 or 3 fields")
            error = array[1]
            allow = array[2] if len(array) == 3 else False
            _require(error is None or isinstance(error, str), "close error is not a string")
            _require(isinstance(allow, bool), "allowReconnect is not a boolean")
            return Close(error, allow)
        if kind in (MessageType.ACK, MessageType.SEQUENCE):
            _require(len(array) == 2 and type(array[1]) is int and array[1] >= 0, "bad sequence id")
            return Ack(array[1]) if kind == MessageType.ACK else Sequence(array[1])
        raise MessageError(f"unknown message type {kind}")

    @staticmethod
    def _completion(array: list[Any]) -> Completion:
        _require(len(array) in (4, 5), "completion needs 4 or 5 fields")
        headers, invocation_id, result_kind = array[1:4]
        _require(_is_str_map(headers) and isinstance(invocation_id, str), "bad completion")
        if result_kind == 1:
            _require(len(array) == 5 and isinstance(array[4], str), "completion error is not a string")
            return Completion(invocation_id, error=array[4], headers=headers)
        if result_kind == 2:
            _require(len(array) == 4, "void completion has no result")
            return Completion(invocation_id, headers=headers)
        if result_kind == 3:
            _require(len(array) == 5, "completion result missing")
            return Completion(invocation_id, result=array[4], has_result=True, headers=headers)
        raise MessageError("unknown completion result kind")


class JsonProtocol:
    """JSON objects, each followed by the record separator; dates as ISO-8601 strings."""

    name = "json"

    # -- encoding ---------------------------------------------------------------------------

    def encode(self, message: Message) -> str:
        text = json.dumps(self._as_object(message), separators=(",", ":"), default=_json_default)
        return text + RECORD_SEPARATOR

    @staticmethod
    def _as_object(message: Message) -> dict[str, Any]:
        body: dict[str, Any] = {"type": int(message.type)}
        match message:
            case Invocation() | StreamInvocation():
                if message.invocation_id is not None:
                    body["invocationId"] = message.invocation_id
                body["target"] = message.target
                body["arguments"] = message.arguments
                if message.stream_ids:
                    body["streamIds"] = message.stream_ids
            case StreamItem():
                body["invocationId"] = message.invocation_id
                body["item"] = message.item
            case Completion():
                body["invocationId"] = message.invocation_id
                if message.error is not None:
                    body["error"] = message.error
                elif message.has_result:
                    body["result"] = message.result
            case CancelInvocation():
                body["invocationId"] = message.invocation_id
            case Close():
                if message.error is not None:
                    body["error"] = message.error
                body["allowReconnect"] = message.allow_reconnect
            case Ack() | Sequence():
                body["sequenceId"] = message.sequence_id
        headers = getattr(message, "headers", None)
        if headers:
            body["headers"] = headers
        return body

    # -- decoding ---------------------------------------------------------------------------

    def split(self, buffer: bytearray, max_size: int) -> list[bytes]:
        records: list[bytes] = []
        while (end := buffer.find(_RS)) >= 0:
            if end > max_size:
                raise FramingError(f"message of {end} bytes exceeds the limit of {max_size}")
            records.append(bytes(buffer[:end]))
            del buffer[: end + 1]
        if len(buffer) > max_size:
            raise FramingError(f"message exceeds the limit of {max_size} bytes")
        return records

    def parse(self, record: bytes) -> Message:
        try:
            body = json.loads(record)
        except (ValueError, RecursionError):  # RecursionError: nesting deeper than the stack
            raise MessageError("not JSON") from None
        _require(isinstance(body, dict), "a message is a JSON object")
        kind = body.get("type")
        _require(type(kind) is int, "message type is not an integer")
        headers = body.get("headers", {})
        _require(_is_str_map(headers), "headers are not a string map")
        invocation_id = body.get("invocationId")
        _require(invocation_id is None or isinstance(invocation_id, str), "invocationId is not a string")
        if kind in (MessageType.INVOCATION, MessageType.STREAM_INVOCATION):
            target, arguments = body.get("target"), body.get("arguments")
            stream_ids = body.get("streamIds", [])
            _require(isinstance(target, str), "target is not a string")
            _require(isinstance(arguments, list), "arguments are not an array")
            _require(_is_str_list(stream_ids), "streamIds are not strings")
            if kind == MessageType.INVOCATION:
                return Invocation(target, arguments, invocation_id, headers, stream_ids)
            _require(invocation_id is not None, "stream invocation needs an invocationId")
            return StreamInvocation(invocation_id, target, arguments, headers, stream_ids)
        if kind == MessageType.STREAM_ITEM:
            _require(invocation_id is not None and "item" in body, "bad stream item")
            return StreamItem(invocation_id, body["item"], headers)
        if kind == MessageType.COMPLETION:
            _require(invocation_id is not None, "completion needs an invocationId")
            error = body.get("error")
            _require(error is None or isinstance(error, str), "completion error is not a string")
            _require(not ("error" in body and "result" in body), "completion has both error and result")
            return Completion(invocation_id, error, body.get("result"), "result" in body, headers)
        if kind == MessageType.CANCEL_INVOCATION:
            _require(invocation_id is not None, "cancel invocation needs an invocationId")
            return CancelInvocation(invocation_id, headers)
        if kind == MessageType.PING:
            return Ping()
        if kind == MessageType.CLOSE:
            error = body.get("error")
            allow = body.get("allowReconnect", False)
            _require(error is None or isinstance(error, str), "close error is not a string")
            _require(isinstance(allow, bool), "allowReconnect is not a boolean")
            return Close(error, allow)
        if kind in (MessageType.ACK, MessageType.SEQUENCE):
            sequence_id = body.get("sequenceId")
            _require(type(sequence_id) is int and sequence_id >= 0, "bad sequenceId")
            return Ack(sequence_id) if kind == MessageType.ACK else Sequence(sequence_id)
        raise MessageError(f"unknown message type {kind}")


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise TypeError("naive datetime: its instant is unknown")
        # Milliseconds: the precision JavaScript's Date keeps and the clients compare at.
        return value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


PROTOCOLS: dict[str, HubProtocol] = {p.name: p for p in (MessagePackProtocol(), JsonProtocol())}
