"""Serve a Sanic app in the test's own event loop, on a free loopback port."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

from sanic import Sanic

__all__ = ["ServedApp", "serve"]


@dataclass
class ServedApp:
    app: Sanic
    port: int
    _server: Any
    _sock: socket.socket

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        """Run the app's stop listeners (goodbyes, pools), then close the port."""
        await self._server.before_stop()
        await self._server.close()
        await self._server.after_stop()
        self._sock.close()


async def serve(app: Sanic) -> ServedApp:
    """Start the app as ``pgwarden api``/``hub`` would (its start listeners run first)."""
    app.config.TOUCHUP = False  # Sanic's code rewriting works once per process; tests start many apps
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    # the protocol its sockets need (a connection's first-byte deadline; the hub's pacing and frames)
    server = await app.create_server(sock=sock, access_log=False, protocol=getattr(app.ctx, "protocol", None))
    await server.startup()
    await server.before_start()
    await server.after_start()
    await server.start_serving()
    return ServedApp(app, sock.getsockname()[1], server, sock)
