"""SignalR negotiation, for clients that do not skip it (the hub itself is wshub's)."""

from __future__ import annotations

import secrets

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from vaultapi.auth import authorized

__all__ = ["bp"]

bp = Blueprint("notifications", url_prefix="/notifications")


@bp.post("/hub/negotiate")
@authorized
async def negotiate(request: Request) -> HTTPResponse:
    transports = (
        [{"transport": "WebSockets", "transferFormats": ["Text", "Binary"]}]
        if request.app.ctx.config.websocket_enabled
        else []
    )
    return json({"connectionId": secrets.token_urlsafe(16), "availableTransports": transports})
