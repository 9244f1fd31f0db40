"""One client past its handshake: who it is, its Session, and the bytes on their way to its socket.

``send`` takes a complete WebSocket frame (framing.py; one per message and protocol, the same
bytes for every recipient) and hands it to the socket's transport within the same turn of the
event loop: no task, queue or await per connection. Frames sent to one connection in one turn
are written together, once, at the turn's end (``_TurnWrites``): one system call where a burst
of events would take one each, so a hub that falls behind catches up faster. The transport
buffers what the kernel does not take yet, and says when its buffer passes its high-water mark
(wire.py); from then on frames wait in a small overflow of this connection, written as soon as
the transport drains. The overflow is bounded in bytes, not
frames, since a frame's size is what memory pays for: a frame that would take it past
``send_buffer`` fails the connection at once (1013), and the client reconnects and syncs. So a
client that stops reading costs at most the transport's high-water mark plus ``send_buffer``, and
never holds up anyone else. (JSON frames are ASCII, json.dumps escapes the rest.)

Its life follows its session's state:

- OPEN: frames go out in order.
- CLOSING: one goodbye, whoever asked for it (``close`` from the hub, a Close or bad bytes from
  the client): the session's SignalR Close goes out behind what is waiting, then the WebSocket
  close with the reason's code. A goodbye that does not fit in the overflow, or is not taken
  within ``close_timeout``, is cut short: the socket is failed with the same code at once.
- CLOSED: the socket is gone; frames held back are let go at once.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import weakref
from collections import deque
from collections.abc import Callable, Collection
from typing import Any

from websockets.protocol import State as SocketState

from wshub.framing import frame
from wshub.session import CloseReason, Session, SessionEvent, State

__all__ = ["Connection", "close_all"]

log = logging.getLogger(__name__)

_ids = itertools.count(1)
_SOCKET_OPEN = SocketState.OPEN


class Connection:
    """A live hub connection. ``user_id`` is set on the hub, ``auth_request_id`` on the anonymous hub.
    ``device_id`` is the account's devices row of the token's device (what a one-device LogOut
    names). ``expires_at`` (seconds since the epoch) is when its token, or its wait, runs out.

    ``ws`` is the client's :class:`wshub.websocket.WebSocket`: its ``transport`` takes the frames,
    its ``writable`` says whether the transport takes more now, and its ``state`` whether data
    frames may still go (not once a close frame was sent or received). ``on_ending`` is called
    once, when the session leaves OPEN."""

    # Slots: attribute reads on the fan-out path stay as cheap as they go, and memory small.
    __slots__ = ("id", "ws", "session", "protocol", "ip", "user_id", "device_identifier", "device_id",
                 "auth_request_id", "expires_at", "buffered", "on_ending", "_open", "_transport", "_turn",
                 "_this_turn", "_overflow", "_send_buffer", "_close_timeout", "_drained", "_ending", "_closed")

    def __init__(
        self,
        ws: Any,
        session: Session,
        *,
        ip: str,
        send_buffer: int,
        user_id: str | None = None,
        device_identifier: str | None = None,
        device_id: str | None = None,
        auth_request_id: str | None = None,
        expires_at: float | None = None,
        close_timeout: float = 5.0,
    ) -> None:
        if session.state is not State.OPEN or session.protocol is None:
            raise ValueError("a connection starts once its handshake reply is written")
        self.id = next(_ids)
        self.ws = ws
        self.session = session
        self.protocol = session.protocol
        self.ip = ip
        self.user_id = user_id
        self.device_identifier = device_identifier
        self.device_id = device_id
        self.auth_request_id = auth_request_id
        self.expires_at = expires_at
        #: Bytes held back in the overflow, waiting for the transport to drain.
        self.buffered = 0
        self.on_ending: Callable[[], None] | None = None
        # ``session.state is OPEN`` as one attribute, for ``send``, which runs per message per
        # recipient; it changes only in _left_open.
        self._open = True
        self._transport = ws.transport
        ws.on_writable = self._flush
        self._turn: _TurnWrites | None = None  # the event loop's, on the first send
        # frames sent in this turn of the loop, written at its end; None when there are none
        self._this_turn: list[bytes] | None = None
        # Made when first needed, as are the two events: an idle connection holds none of them.
        self._overflow: deque[bytes] | None = None
        self._send_buffer = send_buffer
        self._close_timeout = close_timeout
        # the goodbye's wait for the overflow to drain; None while nothing waits
        self._drained: asyncio.Future[None] | None = None
        # The session left OPEN, and reached CLOSED, as something to wait for.
        self._ending: asyncio.Event | None = None
        self._closed: asyncio.Event | None = None

    def __repr__(self) -> str:
        who = f"user={self.user_id} device={self.device_identifier}" if self.user_id else f"auth_request={self.auth_request_id}"
        return f"<Connection {self.id} {who} ip={self.ip} {self.protocol.name}>"

    # -- from the hub ---------------------------------------------------------------------------

    def send(self, wire: bytes) -> bool:
        """Write one complete frame at the end of this turn of the loop, or hold it back while the
        transport is full; False once the connection is ending, or when it fell too far behind
        and was closed for it."""
        if not self._open:
            return False
        # the hot path: more for this turn, or the first, with nothing held back, the transport
        # taking more and the socket open
        this_turn = self._this_turn
        if this_turn is not None:
            this_turn.append(wire)
            return True
        ws = self.ws
        if not self.buffered and ws.writable and ws.state is _SOCKET_OPEN:
            self._this_turn = [wire]
            turn = self._turn
            if turn is None:
                turn = self._turn = _TurnWrites.of(asyncio.get_running_loop())
            turn.add(self)
            return True
        return self._write(wire)

    def close(self, reason: CloseReason, detail: str | None = None) -> None:
        """Say goodbye: a SignalR Close after what is held back, then the WebSocket close.
        The first reason wins; later calls do nothing."""
        self.session.close(reason, detail)
        # also when the session was ending already: what it left unsent goes now
        self._send_from_session()

    # -- from the socket handler ----------------------------------------------------------------

    def receive(self, data: bytes | str) -> list[SessionEvent]:
        """Feed one client frame to the session and send what it answers, its goodbye included."""
        events = self.session.receive(data)
        self._send_from_session()
        return events

    def lost(self) -> None:
        """The client's socket is gone: nothing more can be sent."""
        self._gone()

    async def ending(self) -> None:
        """Returns once the session has left OPEN, from either side."""
        if self._open:
            if self._ending is None:
                self._ending = asyncio.Event()
            await self._ending.wait()

    async def finish(self) -> None:
        """Let the goodbye go out (at most ``close_timeout``): what is held back, then the close."""
        try:
            if self._this_turn is not None:  # the turn's end may come after this
                self._write_turn()
            if self.session.state is State.CLOSING:
                try:
                    async with asyncio.timeout(self._close_timeout):
                        await self._goodbye()
                except TimeoutError:
                    self._abort()
                except asyncio.CancelledError:
                    task = asyncio.current_task()
                    if task is not None and task.cancelling():
                        raise
                    # Sanic cancels a write to a socket that is closing
                except Exception as error:  # the socket went away under us
                    log.debug("goodbye to %r ended: %s", self, error)
        finally:
            self._gone()
            if self._closed is None:
                self._closed = asyncio.Event()
            self._closed.set()

    async def wait_closed(self) -> None:
        """Returns once ``finish`` is done: the socket closed or failed."""
        if self._closed is None:
            self._closed = asyncio.Event()
        await self._closed.wait()

    # -- private ------------------------------------------------------------------------------

    def _send_from_session(self) -> None:
        for payload in self.session.data_to_send():
            if not self._write(frame(payload)):
                return
        if self._open and self.session.state is not State.OPEN:
            self._left_open()

    def _write(self, wire: bytes) -> bool:
        """Write the frame now, behind what this turn sent, or hold it back behind what waits."""
        if self._this_turn is not None:
            self._write_turn()
        return self._write_now(wire)

    def _write_turn(self) -> None:
        """Write what was sent in this turn: at its end, or before anything that must follow it."""
        frames, self._this_turn = self._this_turn, None
        if frames:
            self._write_now(frames[0] if len(frames) == 1 else b"".join(frames))

    def _write_now(self, wire: bytes) -> bool:
        if self.session.state is State.CLOSED:
            return False
        if self._overflow or not self.ws.writable:
            buffered = self.buffered + len(wire)
            if buffered > self._send_buffer:
                self._abort()  # a goodbye would only wait behind what it does not read
                return False
            self.buffered = buffered
            if self._overflow is None:
                self._overflow = deque()
            self._overflow.append(wire)
            return True
        if self.ws.state is not _SOCKET_OPEN:
            return False  # a close frame went or came: the handler sees the end
        try:
            self._transport.write(wire)
        except (RuntimeError, OSError):
            self._gone()
            return False
        return True

    def _flush(self) -> None:
        """The transport drained: write what was held back, as far as it takes it."""
        overflow = self._overflow
        ws = self.ws
        while overflow and ws.writable:
            if ws.state is not _SOCKET_OPEN or self._transport.is_closing():
                self._gone()
                return
            wire = overflow.popleft()
            self.buffered -= len(wire)
            try:
                self._transport.write(wire)
            except (RuntimeError, OSError):
                self._gone()
                return
        if not overflow:
            self._wake_goodbye()

    async def _goodbye(self) -> None:
        while self._overflow:
            self._drained = asyncio.get_running_loop().create_future()
            await self._drained
        if self.session.state is State.CLOSING:  # not lost meanwhile
            closing = self.session.closing
            assert closing is not None
            await self.ws.end(closing.code, closing.text)

    def _wake_goodbye(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def _left_open(self) -> None:
        if not self._open:
            return
        self._open = False
        if self._ending is not None:
            self._ending.set()
        on_ending, self.on_ending = self.on_ending, None
        if on_ending is not None:
            on_ending()

    def _gone(self) -> None:
        if self.session.state is not State.CLOSED:
            self.session.connection_closed()
        self._left_open()
        # nothing more will be written: what waited is let go now, not with the connection
        self._this_turn = None
        self._overflow = None
        self.buffered = 0
        self.ws.on_writable = None
        self._wake_goodbye()

    def _abort(self) -> None:
        """Close now, without waiting on the socket: the way out for a client that stopped reading."""
        self.session.close(CloseReason.TOO_SLOW)  # kept if another reason came first
        closing = self.session.closing
        assert closing is not None
        self.ws.fail(closing.code, closing.text)
        self._gone()  # the socket is failed: nothing held back will ever be written


class _TurnWrites:
    """The connections sent frames in this turn of one event loop; each writes them at its end."""

    __slots__ = ("_loop", "_connections", "__weakref__")

    _of_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _TurnWrites] = weakref.WeakKeyDictionary()

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._connections: list[Connection] = []

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> _TurnWrites:
        turn = cls._of_loop.get(loop)
        if turn is None:
            turn = cls._of_loop[loop] = cls(loop)
        return turn

    def add(self, connection: Connection) -> None:
        if not self._connections:
            # after the callbacks already due: events that arrived together are written together
            self._loop.call_soon(self._write)
        self._connections.append(connection)

    def _write(self) -> None:
        connections, self._connections = self._connections, []
        for connection in connections:
            connection._write_turn()


async def close_all(connections: Collection[Connection], reason: CloseReason, timeout: float) -> None:
    """Say goodbye to every connection, then wait (at most ``timeout``) for their sockets to close."""
    for connection in connections:
        connection.close(reason)
    closed = [asyncio.ensure_future(connection.wait_closed()) for connection in connections]
    if closed:
        _, late = await asyncio.wait(closed, timeout=timeout)
        for waiter in late:
            waiter.cancel()
