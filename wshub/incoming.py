"""The client's WebSocket frames, read (RFC 6455 §5): bytes in, messages and control frames out.

Pure, in the manner of framing.py for the other direction: no socket, no event loop. A
:class:`FrameReader` takes the bytes of one connection as they arrive, in pieces of any size, and
returns what they completed: a data message (``str`` for Text, ``bytes`` for Binary, its
fragments joined), a :class:`Ping`, :class:`Pong` or :class:`CloseFrame`. Input a server must
refuse raises :class:`Violation` with the close code to answer it with:

- 1002: a frame from the client that is not masked, a reserved bit set (the hub negotiates no
  extension), an unknown opcode, a fragmented or oversized control frame, a continuation with no
  message to continue or a new message in the middle of one, a bad close code;
- 1007: a Text message or close reason that is not UTF-8;
- 1009: a message over ``max_size`` bytes, refused from the header that announces it, before its
  payload is buffered.

So what it holds is bounded: at most one frame's header and payload not yet complete, and the
fragments of one message, together within ``max_size`` (plus 14 header bytes). After a close frame
it reads nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass

try:
    from websockets.speedups import apply_mask
except ImportError:  # the library's pure-Python build
    from websockets.utils import apply_mask

__all__ = ["CloseFrame", "FrameReader", "Ping", "Pong", "Violation"]

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_DATA = (TEXT, BINARY)
_CONTROL = (CLOSE, PING, PONG)
#: A control frame's payload fits a one-byte length (§5.5).
_MAX_CONTROL = 125


@dataclass(frozen=True, slots=True)
class Ping:
    payload: bytes


@dataclass(frozen=True, slots=True)
class Pong:
    payload: bytes


@dataclass(frozen=True, slots=True)
class CloseFrame:
    """The client's close: ``code`` is None when it gave none (an empty close frame)."""

    code: int | None
    reason: str


class Violation(Exception):
    """The client broke the protocol: close the connection with ``code``; ``reason`` is fixed text,
    never the client's bytes."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _protocol_error(reason: str) -> Violation:
    return Violation(1002, reason)


def valid_close_code(code: int) -> bool:
    """Codes a peer may send (§7.4): the defined ones that may appear on the wire, and those
    registered or private (3000-4999)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


class FrameReader:
    """One connection's incoming frames; see the module docstring."""

    __slots__ = ("max_size", "_buffer", "_fragments", "_fragments_opcode", "_fragments_size", "_closed")

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        # bytes of a frame not yet complete, appended to in place (a frame that comes a byte at
        # a time costs no copy per byte); None between frames, as an idle connection is
        self._buffer: bytearray | None = None
        # the fragments of a message not yet complete, else None
        self._fragments: list[bytes] | None = None
        self._fragments_opcode = 0
        self._fragments_size = 0
        self._closed = False

    def feed(self, data: bytes) -> list[str | bytes | Ping | Pong | CloseFrame]:
        """What ``data`` completed, in order. Raises Violation; after a close frame, returns nothing."""
        if self._closed:
            return []
        pending = self._buffer
        buffer: bytes | bytearray = data
        if pending is not None:
            pending += data
            buffer = pending
        received: list[str | bytes | Ping | Pong | CloseFrame] = []
        start, end = 0, len(buffer)
        while not self._closed:
            parsed = self._frame(buffer, start, end)
            if parsed is None:
                break
            start, item = parsed
            if item is not None:
                received.append(item)
        if self._closed or start == end:
            self._buffer = None
        elif pending is not None:
            del pending[:start]
        else:
            self._buffer = bytearray(memoryview(data)[start:])
        return received

    def _frame(self, buffer: bytes | bytearray, start: int, end: int) -> tuple[int, str | bytes | Ping | Pong | CloseFrame | None] | None:
        """The frame at ``start``: where the next begins and what it completed; None while incomplete."""
        if end - start < 2:
            return None
        first, second = buffer[start], buffer[start + 1]
        fin, opcode = first & 0x80, first & 0x0F
        if first & 0x70:
            raise _protocol_error("reserved bits must be 0")
        if not second & 0x80:
            raise _protocol_error("a client's frames must be masked")
        length = second & 0x7F
        header = 2
        if opcode in _CONTROL:
            if not fin:
                raise _protocol_error("fragmented control frame")
            if length > _MAX_CONTROL:
                raise _protocol_error("control frame too long")
        elif opcode in _DATA or opcode == CONTINUATION:
            if length == 126:
                if end - start < 4:
                    return None
                length = int.from_bytes(buffer[start + 2:start + 4], "big")
                header = 4
            elif length == 127:
                if end - start < 10:
                    return None
                length = int.from_bytes(buffer[start + 2:start + 10], "big")
                if length >> 63:
                    raise _protocol_error("frame length out of range")
                header = 10
            self._check_data(opcode, length)
        else:
            raise _protocol_error("unknown opcode")
        mask_at = start + header
        payload_at = mask_at + 4
        frame_end = payload_at + length
        if end < frame_end:
            return None
        payload = apply_mask(buffer[payload_at:frame_end], buffer[mask_at:payload_at]) if length else b""
        if opcode in _CONTROL:
            return frame_end, self._control(opcode, payload)
        return frame_end, self._data(opcode, bool(fin), payload)

    def _check_data(self, opcode: int, length: int) -> None:
        """Refuse a data frame from its header: out of sequence, or past the message size limit."""
        if opcode == CONTINUATION:
            if self._fragments is None:
                raise _protocol_error("continuation frame with no message to continue")
            size = self._fragments_size + length
        else:
            if self._fragments is not None:
                raise _protocol_error("new message before the last one ended")
            size = length
        if size > self.max_size:
            raise Violation(1009, "message too big")

    def _data(self, opcode: int, fin: bool, payload: bytes) -> str | bytes | None:
        if opcode != CONTINUATION:
            if fin:
                return _message(opcode, payload)
            self._fragments, self._fragments_opcode, self._fragments_size = [payload], opcode, len(payload)
            return None
        assert self._fragments is not None
        self._fragments.append(payload)
        self._fragments_size += len(payload)
        if not fin:
            return None
        fragments, self._fragments = self._fragments, None
        return _message(self._fragments_opcode, b"".join(fragments))

    def _control(self, opcode: int, payload: bytes) -> Ping | Pong | CloseFrame:
        if opcode == PING:
            return Ping(payload)
        if opcode == PONG:
            return Pong(payload)
        self._closed = True
        self._fragments = None
        if not payload:
            return CloseFrame(None, "")
        if len(payload) == 1:
            raise _protocol_error("close frame with a one-byte payload")
        code = int.from_bytes(payload[:2], "big")
        if not valid_close_code(code):
            raise _protocol_error("invalid close code")
        try:
            return CloseFrame(code, payload[2:].decode())
        except UnicodeDecodeError:
            raise Violation(1007, "close reason is not UTF-8") from None


def _message(opcode: int, payload: bytes) -> str | bytes:
    if opcode == BINARY:
        return payload
    try:
        return payload.decode()
    except UnicodeDecodeError:
        raise Violation(1007, "text message is not UTF-8") from None
