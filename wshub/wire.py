"""Sanic's HTTP and WebSocket protocol, plus what writing frames to its transport directly needs.

The hub writes each message's ready-made frame (framing.py) straight to the socket's transport
instead of awaiting ``ws.send`` per socket. The transport says when its buffer passed its
high-water mark (``pause_writing``) and when it drained below the low one (``resume_writing``);
Sanic keeps that as an ``asyncio.Event`` for its own sends, this class also as a plain flag to
read per message, and passes the resume on to the connection that holds frames back meanwhile.

Sanic's own writes (the handshake, pongs, pings, close frames) and these are whole frames, each
one ``transport.write``: the two can take turns, never cut into one another.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sanic.server.protocols.websocket_protocol import WebSocketProtocol

__all__ = ["WireProtocol"]


class WireProtocol(WebSocketProtocol):
    __slots__ = ("writable", "on_writable")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: False while the transport's buffer is past its high-water mark.
        self.writable = True
        #: Called when the transport takes more again (and once when the connection is lost).
        self.on_writable: Callable[[], None] | None = None

    def pause_writing(self) -> None:
        super().pause_writing()
        self.writable = False

    def resume_writing(self) -> None:
        super().resume_writing()
        self.writable = True
        if self.on_writable is not None:
            self.on_writable()
