"""SignalR negotiation, for clients that do not skip it: served alike by the API and the hub.

The reply names a connection id and the transports on offer: WebSockets, in both transfer
formats, while live sync is on; nothing when it is off, so such a client syncs on its own.
A proxy may route ``/notifications/hub/negotiate`` to either app (the examples send it to the
API), so both register this one handler; it needs ``app.ctx.config``, ``verifier`` and ``pool``.
"""

from __future__ import annotations

import logging
import secrets

from sanic import Request
from sanic.response import HTTPResponse, json

from core.access import AccessDenied, authenticate, bearer_token
from core.database import DATABASE_ERRORS
from core.errors import error_json

__all__ = ["NEGOTIATE_PATH", "negotiate"]

log = logging.getLogger(__name__)

NEGOTIATE_PATH = "/notifications/hub/negotiate"


async def negotiate(request: Request) -> HTTPResponse:
    ctx = request.app.ctx
    try:
        await authenticate(bearer_token(request.args, request.headers, allow_query=True), ctx.verifier, ctx.pool)
    except AccessDenied as error:
        log.info("refused negotiate: %s", error.reason)
        return json(error_json("Unauthorized"), status=401)
    except DATABASE_ERRORS:
        return json(error_json("The service is temporarily unavailable."), status=503)
    transports = []
    if ctx.config.websocket_enabled:
        transports = [{"transport": "WebSockets", "transferFormats": ["Text", "Binary"]}]
    return json({"connectionId": secrets.token_urlsafe(16), "availableTransports": transports})
