"""One line per request for operators: client address, method, path, status, duration.

    203.0.113.7 "POST /identity/connect/token" 400 12.4ms

The address is the client's as core.client_address resolves it (a trusted proxy's IP_HEADER).
The path is without its query (where tokens may travel), with anything outside printable ASCII
escaped and cut at MAX_PATH characters, so a client cannot forge or flood log lines.
"""

from __future__ import annotations

import logging
import time

from sanic import Request, Sanic
from sanic.response import HTTPResponse

from vaultapi.client import client_address

__all__ = ["install"]

log = logging.getLogger("pgwarden.access")

MAX_PATH = 200


def install(app: Sanic) -> None:
    app.on_request(_started, priority=1000)
    app.on_response(_answered, priority=-1000)


async def _started(request: Request) -> None:
    request.ctx.started = time.perf_counter()


async def _answered(request: Request, response: HTTPResponse) -> None:
    started = getattr(request.ctx, "started", None)
    duration = (time.perf_counter() - started) * 1000 if started is not None else 0.0
    log.info('%s "%s %s" %d %.1fms', client_address(request), request.method, _printable(request.path),
             response.status, duration)


def _printable(path: str) -> str:
    escaped = "".join(c if " " < c < "\x7f" and c != '"' else f"%{ord(c):02X}" if ord(c) < 256 else "%3F"
                      for c in path[:MAX_PATH])
    return escaped + ("..." if len(path) > MAX_PATH else "")
