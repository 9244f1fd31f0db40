"""One client's SignalR session as a state machine: frames in, events and frames out.

No sockets and no event loop here, in the manner of the websockets library's ``Protocol``:
the caller feeds each client frame to :meth:`Session.receive`, acts on the events it returns,
and writes what :meth:`Session.data_to_send` hands back. So every rule of the conversation can
be tested byte by byte::

    AWAITING_HANDSHAKE --handshake--> OPEN --either side ends it--> CLOSING --socket closed--> CLOSED
            |                                                          ^
            +------------- bad handshake, or none in time -------------+

- Nothing is sent before the handshake reply; bytes behind the handshake are messages.
- Pings only prove the client alive; invocations get an error completion (the hub has no
  methods) whose text is fixed, so a client never makes the hub repeat what it sent; a SignalR
  Close from the client ends the session.
- The official clients send nothing but the handshake, pings and a Close. Every other message is
  a call, and calls are allowed only in a small burst (``CALL_BURST`` per ``CALL_WINDOW``
  seconds); past it the session ends, so a client cannot keep the hub busy answering.
- Bytes that are not SignalR end it with the reason; a record over the size limit is refused
  before it is buffered whole.

Every end has a :class:`CloseReason`: its WebSocket close code, its metric label and its text.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass

from wshub.codec import (
    HANDSHAKE_REPLY,
    Close,
    CodecError,
    Completion,
    FramingError,
    HandshakeError,
    HandshakeReader,
    HubProtocol,
    Invocation,
    Message,
    MessageReader,
    Ping,
    StreamInvocation,
    handshake_error_reply,
)

__all__ = [
    "CALL_BURST",
    "CALL_WINDOW",
    "MAX_INVOCATION_ID",
    "UNKNOWN_METHOD",
    "Closing",
    "CloseReason",
    "Frame",
    "HandshakeDone",
    "MessageReceived",
    "Session",
    "SessionEvent",
    "State",
]

Frame = bytes | str

#: A WebSocket close frame carries at most 123 bytes of reason.
_MAX_CLOSE_REASON = 123

#: Calls a client may make at once; one more comes back every CALL_WINDOW / CALL_BURST seconds.
CALL_BURST = 10
CALL_WINDOW = 60.0
#: The answer to every invocation: the hub has no methods, and names none of the client's.
UNKNOWN_METHOD = "Unknown hub method"
#: SignalR clients number their invocations "0", "1", ...: an id longer than this is no client's.
MAX_INVOCATION_ID = 64


class State(enum.Enum):
    AWAITING_HANDSHAKE = enum.auto()
    OPEN = enum.auto()
    CLOSING = enum.auto()
    CLOSED = enum.auto()


class CloseReason(enum.Enum):
    """Why a session ended: the WebSocket close code, the metric label, the text for logs and the
    close frame, and whether a SignalR Close sent first lets the client reconnect at once."""

    #                 code  label               text                                  reconnect
    NO_HANDSHAKE    = (1008, "no_handshake",    "no handshake in time",                False)
    BAD_HANDSHAKE   = (1002, "bad_handshake",   "bad handshake",                       False)
    INVALID_MESSAGE = (1003, "invalid_message", "invalid message",                     False)
    # a length over the limit is an invalid message too: the code and the label tell it apart
    TOO_BIG         = (1009, "too_big",         "invalid message",                     False)
    TOO_MANY_CALLS  = (1008, "too_many_calls",  "too many invocations",                False)
    LOGGED_OUT      = (1008, "logged_out",      "logged out",                          False)
    # the token's exp passed (or an anonymous wait its time): a fresh token gets back in
    EXPIRED         = (1008, "expired",         "session expired",                     True)
    TOO_SLOW        = (1013, "too_slow",        "too far behind; reconnect and sync",  True)
    SHUTDOWN        = (1001, "shutdown",        "server shutting down",                True)
    INTERNAL_ERROR  = (1011, "internal_error",  "internal error",                      False)
    CLIENT_CLOSED   = (1000, "client_closed",   "closed by the client",                False)
    DISCONNECTED    = (1006, "disconnected",    "connection lost",                     False)

    def __init__(self, code: int, label: str, text: str, allow_reconnect: bool) -> None:
        self.code = code
        self.label = label
        self.text = text
        self.allow_reconnect = allow_reconnect

    @property
    def refused(self) -> bool:
        """True when the session was never served: counted with the refused connections."""
        return self in _REFUSALS

    @property
    def by_client(self) -> bool:
        """True when the client ended it: no SignalR Close is owed, nothing is counted as dropped."""
        return self in _CLIENT_ENDINGS


_REFUSALS = frozenset({CloseReason.NO_HANDSHAKE, CloseReason.BAD_HANDSHAKE})
_CLIENT_ENDINGS = frozenset({CloseReason.CLIENT_CLOSED, CloseReason.DISCONNECTED})


# -- events ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HandshakeDone:
    """The client named a protocol the hub speaks; the reply is in ``data_to_send``."""

    protocol: HubProtocol


@dataclass(frozen=True, slots=True)
class MessageReceived:
    message: Message


@dataclass(frozen=True, slots=True)
class Closing:
    """The session is ending: write ``data_to_send``, then close the WebSocket with ``code``
    and ``text``. ``detail`` says more than the reason's own text (an error, a limit)."""

    reason: CloseReason
    detail: str | None = None

    @property
    def code(self) -> int:
        return self.reason.code

    @property
    def text(self) -> str:
        """The close frame's reason, cut to what a close frame can carry."""
        text = self.detail or self.reason.text
        encoded = text.encode()
        if len(encoded) <= _MAX_CLOSE_REASON:
            return text
        return encoded[:_MAX_CLOSE_REASON].decode(errors="ignore")

    def signalr_close(self) -> Close:
        """The SignalR Close that tells a client library why, before the socket closes."""
        if self.reason.allow_reconnect:
            return Close(error=None, allow_reconnect=True)
        error = f"{self.reason.text}: {self.detail}" if self.detail else self.reason.text
        return Close(error=error, allow_reconnect=False)

    def __str__(self) -> str:
        return f"{self.reason.label}: {self.text}"


SessionEvent = HandshakeDone | MessageReceived | Closing


# -- the session -------------------------------------------------------------------------------


class Session:
    """The state of one client's conversation; see the module docstring."""

    __slots__ = ("state", "protocol", "closing", "_max_message_size", "_handshake", "_reader", "_outgoing",
                 "_clock", "_calls_left", "_calls_counted_at")

    def __init__(self, max_message_size: int = 65536, *, max_handshake_size: int = 4096,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.state = State.AWAITING_HANDSHAKE
        self.protocol: HubProtocol | None = None
        #: Why the session ended, once it does: the first reason given wins.
        self.closing: Closing | None = None
        self._max_message_size = max_message_size
        self._handshake: HandshakeReader | None = HandshakeReader(max_handshake_size)
        self._reader: MessageReader | None = None
        self._outgoing: list[Frame] = []
        # a token bucket: read only when a call arrives, which the official clients never make
        self._clock = clock
        self._calls_left = float(CALL_BURST)
        self._calls_counted_at: float | None = None

    def __repr__(self) -> str:
        protocol = self.protocol.name if self.protocol else "-"
        return f"<Session {self.state.name} {protocol}>"

    def receive(self, data: Frame) -> list[SessionEvent]:
        """Take one client frame; return what happened. Frames after the end are ignored."""
        if self.state is State.AWAITING_HANDSHAKE:
            return self._receive_handshake(data)
        if self.state is State.OPEN:
            return self._receive_messages(data)
        return []

    def data_to_send(self) -> list[Frame]:
        """Frames to write to the client, in order; each is returned once."""
        frames, self._outgoing = self._outgoing, []
        return frames

    def close(self, reason: CloseReason, detail: str | None = None) -> Closing | None:
        """End the session; None when it is already ending.

        When the hub ends an open session it says why in a SignalR Close first; before the
        handshake reply the client has no protocol to be told in.
        """
        was_open = self.state is State.OPEN
        closing = self._end(reason, detail)
        if closing is not None and was_open and not reason.by_client:
            assert self.protocol is not None
            self._outgoing.append(self.protocol.encode(closing.signalr_close()))
        return closing

    def connection_closed(self) -> Closing:
        """The socket is gone; returns why the session ended (the connection was lost, unless a
        reason was given before)."""
        self._end(CloseReason.DISCONNECTED)
        self.state = State.CLOSED
        self._outgoing.clear()
        assert self.closing is not None
        return self.closing

    # -- private ------------------------------------------------------------------------------

    def _end(self, reason: CloseReason, detail: str | None = None) -> Closing | None:
        if self.closing is not None:
            return None
        self.closing = Closing(reason, detail)
        self.state = State.CLOSING
        self._handshake = self._reader = None
        return self.closing

    def _receive_handshake(self, data: Frame) -> list[SessionEvent]:
        assert self._handshake is not None
        try:
            request = self._handshake.feed(data)
        except HandshakeError as error:
            self._outgoing.append(handshake_error_reply(error.reason))
            closing = self._end(CloseReason.BAD_HANDSHAKE, error.reason)
            return [closing] if closing else []
        if request is None:
            return []
        remainder = self._handshake.remainder
        self.state = State.OPEN
        self.protocol = request.protocol
        self._handshake = None
        self._reader = MessageReader(request.protocol, self._max_message_size)
        self._outgoing.append(HANDSHAKE_REPLY)
        events: list[SessionEvent] = [HandshakeDone(request.protocol)]
        if remainder:
            events += self._receive_messages(remainder)
        return events

    def _receive_messages(self, data: Frame) -> list[SessionEvent]:
        assert self._reader is not None and self.protocol is not None
        try:
            messages = self._reader.feed(data)
        except CodecError as error:
            reason = CloseReason.TOO_BIG if isinstance(error, FramingError) else CloseReason.INVALID_MESSAGE
            closing = self.close(reason, error.reason)
            return [closing] if closing else []
        events: list[SessionEvent] = []
        for message in messages:
            if isinstance(message, Ping):
                events.append(MessageReceived(message))
                continue
            if isinstance(message, Close):
                events.append(MessageReceived(message))
                # what follows a Close in the same frame is never read
                closing = self.close(CloseReason.CLIENT_CLOSED)
                if closing is not None:
                    events.append(closing)
                break
            ending = self._call(message)
            if ending is not None:
                closing = self.close(*ending)
                if closing is not None:
                    events.append(closing)
                break
            events.append(MessageReceived(message))
            if isinstance(message, Invocation | StreamInvocation) and message.invocation_id is not None:
                self._outgoing.append(self.protocol.encode(Completion(message.invocation_id, error=UNKNOWN_METHOD)))
        return events

    def _call(self, message: Message) -> tuple[CloseReason, str | None] | None:
        """Count one call; why the session must end instead of answering it, if it must."""
        now = self._clock()
        if self._calls_counted_at is not None:
            refill = (now - self._calls_counted_at) * CALL_BURST / CALL_WINDOW
            self._calls_left = min(float(CALL_BURST), self._calls_left + refill)
        self._calls_counted_at = now
        if self._calls_left < 1:
            return CloseReason.TOO_MANY_CALLS, None
        self._calls_left -= 1
        if isinstance(message, Invocation | StreamInvocation):
            # the answer repeats the id: it must stay short
            if message.invocation_id is not None and len(message.invocation_id) > MAX_INVOCATION_ID:
                return CloseReason.INVALID_MESSAGE, "invocation id too long"
        return None
