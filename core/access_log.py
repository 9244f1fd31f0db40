"""One line per request for operators, the API's and the hub's alike: client address, method,
path, status, duration.

    203.0.113.7 "POST /identity/connect/token" 400 12.4ms
    203.0.113.7 "GET /notifications/hub" 101 3.1ms

A hub connection's line is written when its upgrade is answered (101, or the refusal); how the
connection ended is the hub's own line, when it ends.

The address is the client's as core.client_address resolves it (a trusted proxy's IP_HEADER).
The path is without its query (where tokens may travel), with anything outside printable ASCII
escaped and cut at MAX_PATH characters, so a client cannot forge or flood log lines.
"""

from __future__ import annotations

import logging
import time

from sanic import Request, Sanic
from sanic.response import HTTPResponse

from core.client_address import client_address

__all__ = ["install", "line", "upgraded"]

log = logging.getLogger("pgwarden.access")

MAX_PATH = 200


def install(app: Sanic) -> None:
    app.on_request(_started, priority=1000)
    app.on_response(_answered, priority=-1000)


async def _started(request: Request) -> None:
    request.ctx.started = time.perf_counter()


async def _answered(request: Request, response: HTTPResponse) -> None:
    _line(request, response.status)


def upgraded(request: Request) -> None:
    """The line of a WebSocket upgrade that was accepted: no response passes the middleware then."""
    _line(request, 101)


def _line(request: Request, status: int) -> None:
    address = client_address(request.ip, request.headers, request.app.ctx.config)
    line(address, request.method, request.path, status, getattr(request.ctx, "started", None))


def line(address: str, method: str, path: str, status: int, started: float | None) -> None:
    """One request's line, also for those Sanic never saw (the hub's plain upgrades, door.py);
    ``started``: time.perf_counter() when the request began."""
    duration = (time.perf_counter() - started) * 1000 if started is not None else 0.0
    log.info('%s "%s %s" %d %.1fms', address, method, _printable(path), status, duration)


def _printable(path: str) -> str:
    escaped = "".join(c if " " < c < "\x7f" and c != '"' else f"%{ord(c):02X}" if ord(c) < 256 else "%3F"
                      for c in path[:MAX_PATH])
    return escaped + ("..." if len(path) > MAX_PATH else "")
