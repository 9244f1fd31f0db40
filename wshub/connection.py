"""One client past its handshake: who it is, its Session, and a bounded queue for its socket.

Everything sent to a client goes through ``send``, which never waits: frames queue up and one
writer task per connection moves them to the socket. So a client that stops reading only ever
blocks its own writer. The queue is bounded in bytes (the frame being written included), not in
frames, since a frame's size is what memory pays for: a frame that would take it past
``send_buffer`` fails the connection at once (1013), and the client reconnects and syncs. (JSON
frames are ASCII, json.dumps escapes the rest, so their length is their size too.)

Its life follows its session's state:

- OPEN: frames queue and go out in order.
- CLOSING: one goodbye, whoever asked for it (``close`` from the hub, a Close or bad bytes from
  the client): the session's SignalR Close queues behind what is waiting, then the WebSocket
  close with the reason's code. A goodbye that does not fit in the buffer, or is not taken within
  ``close_timeout``, is cut short: the socket is failed with the same code at once.
- CLOSED: the socket is gone and the writer stopped; queued frames are let go at once.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import Callable, Collection
from typing import Any

from wshub.session import CloseReason, Frame, Session, SessionEvent, State

__all__ = ["Connection", "close_all"]

log = logging.getLogger(__name__)

_ids = itertools.count(1)


class Connection:
    """A live hub connection. ``user_id`` is set on the hub, ``auth_request_id`` on the anonymous hub.
    ``device_id`` is the account's devices row of the token's device (what a one-device LogOut
    names). ``expires_at`` (seconds since the epoch) is when its token, or its wait, runs out."""

    # Slots: attribute reads on the fan-out path stay as cheap as they go.
    __slots__ = ("id", "ws", "session", "protocol", "ip", "user_id", "device_identifier", "device_id",
                 "auth_request_id", "expires_at", "buffered", "_open", "_frames", "_send_buffer", "_wakeup",
                 "_goodbye_queued", "_on_sent", "_close_timeout", "_writer", "_ending", "_closed")

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
        on_sent: Callable[[], None] = lambda: None,
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
        #: Bytes queued and not yet written, the frame in the writer's hands included.
        self.buffered = 0
        # ``session.state is OPEN`` as one attribute, for ``send``, which runs per message per
        # recipient; it changes only in _left_open.
        self._open = True
        # A deque and a byte count instead of an asyncio.Queue: fewer calls per message, and the
        # bound is in bytes.
        self._frames: deque[Frame] = deque()
        self._send_buffer = send_buffer
        # The writer's wait for more frames; None while it is busy.
        self._wakeup: asyncio.Future[None] | None = None
        # The WebSocket close follows once the frames queued before it are written.
        self._goodbye_queued = False
        self._on_sent = on_sent
        self._close_timeout = close_timeout
        self._writer: asyncio.Task[None] | None = None
        # The session left OPEN, and reached CLOSED, as something to wait for.
        self._ending = asyncio.Event()
        self._closed = asyncio.Event()

    def __repr__(self) -> str:
        who = f"user={self.user_id} device={self.device_identifier}" if self.user_id else f"auth_request={self.auth_request_id}"
        return f"<Connection {self.id} {who} ip={self.ip} {self.protocol.name}>"

    # -- from the hub ---------------------------------------------------------------------------

    def send(self, frame: Frame) -> bool:
        """Queue one encoded frame; False once the connection is ending, or when it fell too far
        behind and was closed for it."""
        return self._open and self._put(frame)

    def close(self, reason: CloseReason, detail: str | None = None) -> None:
        """Say goodbye: a SignalR Close after what is queued, then the WebSocket close.
        The first reason wins; later calls do nothing."""
        self.session.close(reason, detail)
        # also when the session was ending already: what it left unqueued goes now
        self._queue_from_session()

    # -- from the socket handler ----------------------------------------------------------------

    def receive(self, data: Frame) -> list[SessionEvent]:
        """Feed one client frame to the session and queue what it answers, its goodbye included."""
        events = self.session.receive(data)
        self._queue_from_session()
        return events

    def start(self) -> None:
        """Start the writer: what is queued goes out from here on."""
        self._writer = asyncio.create_task(self._write(), name=f"hub-writer-{self.id}")

    def lost(self) -> None:
        """The client's socket is gone: nothing more can be sent."""
        self._gone()
        if self._writer is not None:
            self._writer.cancel()

    async def ending(self) -> None:
        """Returns once the session has left OPEN, from either side."""
        await self._ending.wait()

    async def finish(self) -> None:
        """Let the goodbye go out (at most ``close_timeout``), then stop the writer."""
        writer = self._writer
        try:
            if writer is not None and self.session.state is State.CLOSING:
                done, _ = await asyncio.wait({writer}, timeout=self._close_timeout)
                if not done:
                    self._abort()
        finally:
            self._gone()
            self._closed.set()
            if writer is not None and not writer.done():
                writer.cancel()
                await asyncio.gather(writer, return_exceptions=True)

    async def wait_closed(self) -> None:
        """Returns once ``finish`` is done: the socket closed or failed, the writer stopped."""
        await self._closed.wait()

    # -- private ------------------------------------------------------------------------------

    def _queue_from_session(self) -> None:
        for frame in self.session.data_to_send():
            if not self._put(frame):
                return
        if self._open and self.session.state is not State.OPEN:
            self._left_open()
            self._goodbye_queued = True
            self._wake()

    def _left_open(self) -> None:
        self._open = False
        self._ending.set()

    def _gone(self) -> None:
        if self.session.state is not State.CLOSED:
            self.session.connection_closed()
        self._left_open()
        # nothing more will be written: what waited is let go now, not with the connection
        self._frames.clear()
        self.buffered = 0

    def _put(self, frame: Frame) -> bool:
        buffered = self.buffered + len(frame)
        if buffered > self._send_buffer:
            self._abort()  # a goodbye would only queue behind what it does not read
            return False
        self.buffered = buffered
        self._frames.append(frame)
        if self._wakeup is not None:
            self._wake()
        return True

    def _wake(self) -> None:
        wakeup, self._wakeup = self._wakeup, None
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    def _abort(self) -> None:
        """Close now, without waiting on the socket: the way out for a client that stopped reading."""
        self.session.close(CloseReason.TOO_SLOW)  # kept if another reason came first
        closing = self.session.closing
        assert closing is not None
        fail = getattr(self.ws, "fail_connection", None)
        if fail is not None:
            fail(closing.code, closing.text)
        self._gone()  # the socket is failed: nothing queued will ever be written
        if self._writer is not None:
            self._writer.cancel()

    async def _write(self) -> None:
        frames = self._frames
        try:
            while frames or not self._goodbye_queued:
                if not frames:
                    self._wakeup = asyncio.get_running_loop().create_future()
                    await self._wakeup
                    continue
                frame = frames.popleft()
                await self.ws.send(frame)
                # counted until written: a client that stops reading holds its writer here
                if self.session.state is not State.CLOSED:  # else _gone let everything go
                    self.buffered -= len(frame)
                self._on_sent()
            closing = self.session.closing
            assert closing is not None
            await asyncio.wait_for(self.ws.close(closing.code, closing.text), self._close_timeout)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            self._gone()  # Sanic cancels a write to a socket that is closing
        except Exception as error:  # the socket went away under us
            log.debug("writer of %r ended: %s", self, error)
            self._gone()


async def close_all(connections: Collection[Connection], reason: CloseReason, timeout: float) -> None:
    """Say goodbye to every connection, then wait (at most ``timeout``) for their sockets to close."""
    for connection in connections:
        connection.close(reason)
    closed = [asyncio.ensure_future(connection.wait_closed()) for connection in connections]
    if closed:
        _, late = await asyncio.wait(closed, timeout=timeout)
        for waiter in late:
            waiter.cancel()
