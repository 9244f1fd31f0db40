"""A hub client's socket once upgraded: the WebSocket protocol on its transport, and nothing more.

Sanic parses the upgrade request, routes it and runs admission; the upgrade's answer hands the
transport to a :class:`WebSocket` (wire.py), which serves it from then on with no task, queue or
future of its own: an idle connection is this object, its transport, its frame reader (empty
between frames) and what the hub keeps of its client. Each read is parsed where it arrives
(incoming.py) and each message handed to the ``listener`` in the same callback; the hub writes
ready-made frames (framing.py) straight to ``transport``. Until the client's SignalR handshake
is read, its reads wait their turn instead (``turns``, wshub/turns.py), reading paused meanwhile:
in a reconnect storm, thousands of handshakes arrive in the same turns of the loop.

The protocol's own duties are here:

- a Ping is answered with a Pong, unless the transport is full (then the client is not reading,
  and the next Ping gets the answer: RFC 6455 §5.5.3 allows answering the latest only);
- a close from the client is answered with a close that repeats its code, and the TCP connection
  closed; a close from the hub (``end``) waits for the client's answer, at most ``close_timeout``;
- input that breaks the protocol (incoming.Violation: unmasked, oversized, not UTF-8...) fails
  the connection with the violation's code;
- a link that died without a word (no FIN, no RST) shows only as silence: on each keepalive
  tick the hub sends a Ping (``WEBSOCKET_PING``), and ``keep_alive`` fails a socket that
  answered none of the last ``UNANSWERED_PINGS`` with anything;
- the transport's flow control: ``writable`` is False while its buffer is past its high-water mark,
  and ``on_writable`` is called when it drains (and once when the connection is lost).

``state`` is the websockets library's: OPEN while data may go both ways, CLOSING once a close was
sent or received, CLOSED once the transport is gone.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable
from typing import Protocol

from websockets.protocol import State

from wshub.incoming import CloseFrame, FrameReader, Ping, Pong, Violation
from wshub.turns import Turns

__all__ = ["WEBSOCKET_PING", "UNANSWERED_PINGS", "Listener", "WebSocket", "close_frame"]

log = logging.getLogger(__name__)

_OPEN, _CLOSING, _CLOSED = State.OPEN, State.CLOSING, State.CLOSED
_CLOSE_CODE = struct.Struct("!H")
#: A server's Ping, empty: what the keepalive tick sends beside the SignalR one.
WEBSOCKET_PING = bytes((0x89, 0))

#: Keepalive ticks a client may let pass without a word (with 15-s ticks, 30 to 45 s of silence).
UNANSWERED_PINGS = 2


class Listener(Protocol):
    """What a WebSocket tells the hub."""

    def received(self, data: str | bytes) -> None:
        """One data message from the client."""

    def lost(self) -> None:
        """The socket is gone (or closing, from the client's side): nothing more will be read."""


class _Nobody:
    """The listener of a socket the hub is done with."""

    def received(self, data: str | bytes) -> None:
        pass

    def lost(self) -> None:
        pass


_NOBODY = _Nobody()


def close_frame(code: int | None, reason: str = "") -> bytes:
    """A server's close frame (never masked); None: one with no code, as an answer to one."""
    payload = b"" if code is None else _CLOSE_CODE.pack(code) + reason.encode()[:123]
    return bytes((0x88, len(payload))) + payload


class WebSocket(asyncio.Protocol):
    """One upgraded connection; see the module docstring."""

    __slots__ = ("transport", "state", "writable", "on_writable", "listener", "close_timeout", "unheard", "turns",
                 "_reader", "_unread", "_queued", "_closed", "_abort_timer")

    def __init__(self, transport: asyncio.Transport, unread: bytes, *, max_size: int, close_timeout: float) -> None:
        self.transport = transport
        self.state = _OPEN
        #: False while the transport's buffer is past its high-water mark.
        self.writable = True
        #: Called when the transport takes more again (and once when the connection is lost).
        self.on_writable: Callable[[], None] | None = None
        self.listener: Listener | None = None
        self.close_timeout = close_timeout
        #: Keepalive ticks since the client last sent anything.
        self.unheard = 0
        #: While set, what arrives is read in a turn of these (turns.py), not where it arrives (the
        #: hub sets it until the client's handshake is read).
        self.turns: Turns | None = None
        self._reader = FrameReader(max_size)
        # what came in before a listener was set, or before its turn: read then
        self._unread = unread
        self._queued = False
        # the end of the transport, for whoever waits for it; made when someone does
        self._closed: asyncio.Future[None] | None = None
        self._abort_timer: asyncio.TimerHandle | None = None

    @classmethod
    def take_over(cls, transport: asyncio.Transport, unread: bytes, *, max_size: int,
                  close_timeout: float) -> WebSocket:
        """Serve ``transport`` from now on; ``unread`` is what came in behind the upgrade request.
        Nothing is read until ``serve``."""
        socket = cls(transport, unread, max_size=max_size, close_timeout=close_timeout)
        transport.pause_reading()
        transport.set_protocol(socket)
        return socket

    def serve(self, listener: Listener, max_size: int | None = None) -> None:
        """Hand the client's messages to ``listener``, from what came in already on; ``max_size``
        lowers the largest message taken."""
        if max_size is not None:
            self._reader.max_size = max_size
        self.listener = listener
        unread, self._unread = self._unread, b""
        if self.state is _CLOSED:
            listener.lost()
            return
        if unread:
            self.data_received(unread)
        if self.state is not _CLOSED and not self._queued:  # queued: reading resumes in its turn
            self.transport.resume_reading()

    # -- from the hub ---------------------------------------------------------------------------

    def end(self, code: int, reason: str) -> asyncio.Future[None]:
        """Close with ``code`` and ``reason``; done once the transport is gone (at most
        ``close_timeout`` after the close frame, when the client does not answer it)."""
        if self.state is _OPEN:
            self.state = _CLOSING
            self.transport.write(close_frame(code, reason))
            self._abort_later()
        return self.wait_closed()

    def fail(self, code: int, reason: str) -> None:
        """Close now, without waiting for the client's answer: a close frame if one may still go,
        then the transport (cut at ``close_timeout`` if the client does not take what is left)."""
        if self.state is _OPEN:
            self.state = _CLOSING
            self.transport.write(close_frame(code, reason))
        if self.state is not _CLOSED:
            self.transport.close()
            self._abort_later()

    def keep_alive(self) -> bool:
        """One keepalive tick: False, and the socket failed, when the client answered none of the
        last ones; True when it gets the tick's Ping."""
        if self.state is not _OPEN:
            return False
        self.unheard += 1
        if self.unheard > UNANSWERED_PINGS:
            log.debug("client answered no ping: its link is taken as dead")
            self.fail(1011, "keepalive ping timeout")
            return False
        return True

    def release(self) -> None:
        """The hub is done with this socket: its listener, which refers back to it, is dropped
        (so that reference counting frees both), and whatever still arrives is read and ignored."""
        self.listener = _NOBODY

    def wait_closed(self) -> asyncio.Future[None]:
        if self._closed is None:
            self._closed = asyncio.get_running_loop().create_future()
            if self.state is _CLOSED:
                self._closed.set_result(None)
        return self._closed

    # -- Sanic's hooks: its route handler has returned, or was cancelled ---------------------------

    async def close(self) -> None:
        """Sanic's end of the handler: a socket the handler left unserved is closed; a served one
        lives on."""
        if self.listener is None:
            self.fail(1011, "internal error")

    def end_connection(self, code: int = 1000) -> None:
        if self.listener is None:
            self.fail(code, "")

    # -- asyncio.Protocol -----------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.unheard = 0
        if self.listener is None or self._queued:  # before serve or its turn: a read under way when reading paused
            self._unread += data
            return
        if self.turns is not None:
            self._unread = data
            self._queued = True
            self.transport.pause_reading()
            self.turns.add(self._read_in_turn)
            return
        self._read(data)

    def _read_in_turn(self) -> None:
        self._queued = False
        unread, self._unread = self._unread, b""
        if self.state is _CLOSED:
            return
        self.transport.resume_reading()
        self._read(unread)

    def _read(self, data: bytes) -> None:
        assert self.listener is not None
        try:
            received = self._reader.feed(data)
        except Violation as violation:
            log.debug("client broke the WebSocket protocol: %s", violation.reason)
            self.fail(violation.code, violation.reason)
            self.listener.lost()
            return
        for item in received:
            if isinstance(item, str | bytes):
                if self.state is _OPEN:
                    self.listener.received(item)
            elif isinstance(item, Ping):
                if self.state is _OPEN and self.writable:
                    self.transport.write(bytes((0x8A, len(item.payload))) + item.payload)
            elif isinstance(item, CloseFrame):
                self._close_received(item)
            else:
                assert isinstance(item, Pong)

    def eof_received(self) -> bool:
        return False  # the transport closes itself; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = _CLOSED
        if self._abort_timer is not None:
            self._abort_timer.cancel()
            self._abort_timer = None
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)
        self.writable = True
        on_writable, self.on_writable = self.on_writable, None
        if on_writable is not None:
            on_writable()
        listener = self.listener
        if listener is not None:
            listener.lost()

    def pause_writing(self) -> None:
        self.writable = False

    def resume_writing(self) -> None:
        self.writable = True
        if self.on_writable is not None:
            self.on_writable()

    # -- private ------------------------------------------------------------------------------

    def _close_received(self, close: CloseFrame) -> None:
        if self.state is _OPEN:  # the client's close first: answer it with its code
            self.state = _CLOSING
            self.transport.write(close_frame(close.code))
        self.transport.close()  # the server closes TCP first (RFC 6455 §7.1.1)
        self._abort_later()
        assert self.listener is not None
        self.listener.lost()

    def _abort_later(self) -> None:
        if self._abort_timer is None:
            self._abort_timer = asyncio.get_running_loop().call_later(self.close_timeout, self.transport.abort)
