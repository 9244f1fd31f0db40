"""How long a connection may keep the API or the hub waiting for its request.

Sanic gives a new connection its keep-alive time (2 minutes on the API) to send a first byte,
and then measures its request timeout (a minute) from the last byte that arrived, so a client
could hold a connection open at no cost, or keep it with one byte a minute. Here both waits are
``REQUEST_HEADER_TIMEOUT``: a client sends its request at once, and one that does not is closed
within a few seconds of it (Sanic's own timer checks every half of the shortest timeout).
An idle keep-alive connection that was served keeps its longer keep-alive time.
"""

from __future__ import annotations

from typing import Any

from sanic import Sanic

__all__ = ["FirstByteDeadline", "wait_for_requests"]


def wait_for_requests(app: Sanic, seconds: int) -> None:
    """A new connection's first byte, and each next byte of a request's headers, within ``seconds``."""
    app.config.REQUEST_TIMEOUT = seconds
    app.ctx.first_byte_timeout = seconds


class FirstByteDeadline:
    """Mixed into a Sanic HTTP protocol: until its first byte, a connection waits the request
    timeout, not the keep-alive timeout meant for a connection that was served."""

    __slots__ = ()

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self.keep_alive_timeout = self.app.ctx.first_byte_timeout  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.keep_alive_timeout = self.app.config.KEEP_ALIVE_TIMEOUT  # type: ignore[attr-defined]
        super().data_received(data)  # type: ignore[misc]
