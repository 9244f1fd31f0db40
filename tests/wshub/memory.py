"""Hub connections without sockets: a stand-in for Sanic's WebSocket that keeps what would be
written, and real Sessions and Connections around it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from tests.wshub.support import decode_frames
from wshub.connection import Connection
from wshub.session import Frame, Session, State

__all__ = ["MemorySocket", "make_connection", "open_session", "serve", "settle"]


class MemorySocket:
    """What the connection writes, in order: frames, then at most one close or failure."""

    def __init__(self, *, stalled: bool = False, broken: Exception | None = None) -> None:
        self.frames: list[Frame] = []
        self.closed: tuple[int, str] | None = None
        self.failed: tuple[int, str] | None = None
        #: A client that stopped reading: every write waits forever.
        self.stalled = stalled
        #: A socket that went away: every write raises this.
        self.broken = broken

    async def send(self, frame: Frame) -> None:
        if self.broken is not None:
            raise self.broken
        if self.stalled:
            await asyncio.Event().wait()
        self.frames.append(frame)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed = (code, reason)

    def fail_connection(self, code: int = 1006, reason: str = "") -> bool:
        self.failed = (code, reason)
        return True

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
    ws: MemorySocket | None = None, close_timeout: float = 1.0, on_sent: Callable[[], None] = lambda: None,
    expires_at: float | None = None,
) -> Connection:
    return Connection(ws or MemorySocket(), open_session(protocol), ip=ip, send_buffer=send_buffer,
                      user_id=user_id, device_identifier=device, auth_request_id=auth_request_id,
                      expires_at=expires_at, on_sent=on_sent, close_timeout=close_timeout)


async def serve(connection: Connection) -> None:
    """What the socket handler does around a connection, less the reading: write until it ends."""
    connection.start()
    await connection.ending()
    await connection.finish()


async def settle() -> None:
    """Let writer tasks move what is queued (nothing in memory waits longer than a few steps)."""
    for _ in range(10):
        await asyncio.sleep(0)
