"""Sanic's HTTP protocol for the hub's port, whose WebSocket upgrade hands the connection over.

Sanic reads the upgrade request, routes it and runs admission as for any request. Its upgrade
answer is written here, and from then on the transport belongs to a lean
:class:`wshub.websocket.WebSocket`: this protocol leaves Sanic's set of open connections and never
hears of the transport again, so none of Sanic's per-request objects (this protocol, the request,
its HTTP state) outlive the upgrade, and the websockets library's state machine, Sanic's
WebSocket with its tasks and futures, are never made.

The upgrade was checked by admission (admission.py, ``_upgrade_refusal``): the request is one the
websockets library accepts, with no extension or subprotocol negotiated.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from typing import Any

from sanic.server.protocols.websocket_protocol import WebSocketProtocol

from wshub.websocket import WebSocket

__all__ = ["WireProtocol", "accept_key", "hand_over"]

#: RFC 6455 §1.3: what the client's key is hashed with.
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_key(key: str) -> str:
    """The Sec-WebSocket-Accept answering a Sec-WebSocket-Key."""
    return base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()


def hand_over(transport: Any, key: str, unread: bytes, *, max_size: int, close_timeout: float) -> WebSocket:
    """Answer an admitted upgrade with its 101, and serve the transport as a WebSocket from now on."""
    transport.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    b"Sec-WebSocket-Accept: %s\r\n\r\n" % accept_key(key).encode())
    return WebSocket.take_over(transport, unread, max_size=max_size, close_timeout=close_timeout)


class WireProtocol(WebSocketProtocol):
    __slots__ = ()

    async def websocket_handshake(self, request: Any, subprotocols: Sequence[str] | None = None) -> WebSocket:
        transport = self.transport
        assert transport is not None
        # Sanic no longer holds the connection: its shutdown leaves it to the hub's goodbye
        self.connections.discard(self)
        unread = bytes(self.recv_buffer)
        self.recv_buffer.clear()
        return hand_over(transport, request.headers["sec-websocket-key"], unread,
                         max_size=self.websocket_max_size or 2**20, close_timeout=self.websocket_timeout)

    def close(self, timeout: float | None = None) -> None:
        # Sanic closes the connection when its request task ends: an upgraded one lives on
        transport = self.transport
        if transport is not None and transport.get_protocol() is not self:
            if self._callback_check_timeouts:
                self._callback_check_timeouts.cancel()
            return
        super().close(timeout)
