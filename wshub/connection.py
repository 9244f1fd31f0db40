"""One client connection past its handshake: who it is, and a bounded queue for its socket.

Everything sent to a client goes through ``send``, which never waits: frames queue up and one
writer task per connection moves them to the socket. So a client that stops reading only ever
blocks its own writer; once its queue is full it is closed, reconnects and syncs.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wshub.codec import HubProtocol

__all__ = ["CloseCode", "Connection"]

log = logging.getLogger(__name__)

_ids = itertools.count(1)


class CloseCode:
    """WebSocket close codes the hub uses."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    INVALID_DATA = 1003
    POLICY = 1008
    TOO_BIG = 1009
    TRY_AGAIN_LATER = 1013


@dataclass(frozen=True, slots=True)
class _CloseRequest:
    code: int
    reason: str


class Connection:
    """A live hub connection. ``user_id`` is set on the hub, ``auth_request_id`` on the anonymous hub."""

    def __init__(
        self,
        ws: Any,
        protocol: HubProtocol,
        *,
        ip: str,
        queue_size: int,
        user_id: str | None = None,
        device: str | None = None,
        auth_request_id: str | None = None,
        on_sent: Callable[[], None] = lambda: None,
        on_dropped: Callable[[str], None] = lambda reason: None,
        close_timeout: float = 5.0,
    ) -> None:
        self.id = next(_ids)
        self.ws = ws
        self.protocol = protocol
        self.ip = ip
        self.user_id = user_id
        self.device = device
        self.auth_request_id = auth_request_id
        self.closing = False
        self._queue: asyncio.Queue[bytes | str | _CloseRequest] = asyncio.Queue(queue_size)
        self._on_sent = on_sent
        self._on_dropped = on_dropped
        self._close_timeout = close_timeout
        self._writer: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        who = f"user={self.user_id} device={self.device}" if self.user_id else f"auth_request={self.auth_request_id}"
        return f"<Connection {self.id} {who} ip={self.ip} {self.protocol.name}>"

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write_loop(), name=f"hub-writer-{self.id}")

    @property
    def done(self) -> asyncio.Task[None] | None:
        """The writer task; it ends when the connection was closed from the hub's side."""
        return self._writer

    def send(self, frame: bytes | str) -> bool:
        """Queue one encoded frame; a client too far behind is dropped instead."""
        if self.closing:
            return False
        try:
            self._queue.put_nowait(frame)
        except asyncio.QueueFull:
            self.abort(CloseCode.TRY_AGAIN_LATER, "too far behind; reconnect and sync")
            return False
        return True

    def close_when_sent(self, code: int, reason: str) -> None:
        """Close after what is already queued has gone out (a LogOut reaches the client first)."""
        if self.closing:
            return
        try:
            self._queue.put_nowait(_CloseRequest(code, reason))
        except asyncio.QueueFull:
            self.abort(code, reason)
            return
        self.closing = True

    def abort(self, code: int, reason: str) -> None:
        """Close now, without waiting on the socket: the way out for a client that stopped reading."""
        if self.closing:
            return
        self.closing = True
        log.info("closing %r: %s", self, reason)
        self._on_dropped(reason)
        if self._writer is not None:
            self._writer.cancel()
        fail = getattr(self.ws, "fail_connection", None)
        if fail is not None:
            fail(code, reason)

    async def stop(self) -> None:
        """Stop the writer (the client went away); frames still queued are discarded."""
        self.closing = True
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)

    # -- private ------------------------------------------------------------------------------

    async def _write_loop(self) -> None:
        try:
            while True:
                item = await self._queue.get()
                if isinstance(item, _CloseRequest):
                    log.info("closing %r: %s", self, item.reason)
                    self._on_dropped(item.reason)
                    await asyncio.wait_for(self.ws.close(item.code, item.reason), self._close_timeout)
                    return
                await self.ws.send(item)
                self._on_sent()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the socket went away under us: the reader side cleans up
            log.debug("writer of %r ended: %s", self, error)
