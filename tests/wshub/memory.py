"""Hub connections without sockets: a stand-in for the hub's WebSocket whose transport keeps what
is written, and real Sessions and Connections around it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.protocol import State as SocketState
from websockets.uri import parse_uri

from tests.wshub.support import decode_frames
from wshub.connection import Connection
from wshub.session import Frame, Session, State

__all__ = ["MemorySocket", "make_connection", "open_session", "serve", "settle"]


class _Transport:
    def __init__(self, socket: MemorySocket) -> None:
        self._socket = socket
        self.closing = False

    def write(self, data: bytes) -> None:
        if self._socket.broken is not None:
            raise self._socket.broken
        self._socket.writes.append(data)

    def is_closing(self) -> bool:
        return self.closing


class MemorySocket:
    """What the connection writes, in order: frames, then at most one close or failure.

    Every byte written is read back by the websockets library's client side, so ``frames`` holds
    the messages a client would receive (bytes for Binary frames, str for Text ones)."""

    def __init__(self, *, stalled: bool = False, broken: Exception | None = None) -> None:
        #: What was handed to the transport, each write as it came.
        self.writes: list[bytes] = []
        self.closed: tuple[int, str] | None = None
        self.failed: tuple[int, str] | None = None
        #: A client that stopped reading: the transport's buffer is past its high-water mark, and
        #: a close waits forever.
        self.stalled = stalled
        #: A socket that went away: every write raises this.
        self.broken = broken
        # what the connection uses of wshub.websocket.WebSocket
        self.transport = _Transport(self)
        self.writable = not stalled
        self.on_writable: Callable[[], None] | None = None
        self.state = SocketState.OPEN
        #: Keepalive ticks seen.
        self.ticks = 0

    @property
    def frames(self) -> list[Frame]:
        client = ClientProtocol(parse_uri("ws://hub.invalid/"), state=SocketState.OPEN, max_size=None)
        client.receive_data(b"".join(self.writes))
        events = client.events_received()
        assert client.state is SocketState.OPEN, "what was written is not WebSocket frames"
        return [bytes(e.data) if e.opcode is Opcode.BINARY else e.data.decode() for e in events
                if e.opcode in (Opcode.BINARY, Opcode.TEXT)]

    def resume(self) -> None:
        """The client reads again: the transport drains below its low-water mark."""
        self.stalled = False
        self.writable = True
        if self.on_writable is not None:
            self.on_writable()

    def keep_alive(self) -> bool:
        self.ticks += 1
        return True

    async def end(self, code: int = 1000, reason: str = "") -> None:
        if self.stalled:  # the close waits for the client's answer, which never comes
            await asyncio.Event().wait()
        self.state = SocketState.CLOSING
        self.closed = (code, reason)

    def fail(self, code: int = 1006, reason: str = "") -> None:
        self.state = SocketState.CLOSING
        self.transport.closing = True
        self.failed = (code, reason)

    def messages(self, protocol: str = "messagepack") -> list[Any]:
        """The frames written, decoded without wshub's codec."""
        return [message for frame in self.frames for message in decode_frames(frame, protocol)]


def open_session(protocol: str = "messagepack", max_message_size: int = 65536) -> Session:
    """A session past its handshake, its reply taken (as the socket handler writes it)."""
    session = Session(max_message_size)
    session.receive(f'{{"protocol":"{protocol}","version":1}}\x1e')
    assert session.state is State.OPEN
    session.data_to_send()
    return session


def make_connection(
    user_id: str | None = None, *, protocol: str = "messagepack", device: str | None = None,
    auth_request_id: str | None = None, ip: str = "192.0.2.1", send_buffer: int = 4096,
    ws: MemorySocket | None = None, close_timeout: float = 1.0, expires_at: float | None = None,
) -> Connection:
    return Connection(ws or MemorySocket(), open_session(protocol), ip=ip, send_buffer=send_buffer,
                      user_id=user_id, device_identifier=device, auth_request_id=auth_request_id,
                      expires_at=expires_at, close_timeout=close_timeout)


async def serve(connection: Connection) -> None:
    """What the socket handler does around a connection, less the reading: wait for its end, then
    let the goodbye go out."""
    await connection.ending()
    await connection.finish()


async def settle() -> None:
    """Let waiting tasks run (nothing in memory waits longer than a few steps)."""
    for _ in range(10):
        await asyncio.sleep(0)
