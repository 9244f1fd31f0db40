"""Checks made before the WebSocket upgrade, so that a refusal is a plain HTTP response.

In order: the hub is enabled and not stopping, the request is a WebSocket upgrade the library can accept, the
caller is who it says (a token on the hub, an auth request id on the anonymous hub), and one more
connection stays within the caps: then its slot is taken in the registry, before the upgrade, so
a socket counts from its first byte, handshake or not. The slot is given back when the request
ends, whichever way (``give_back``). Each refusal is logged and counted by a label.
"""

from __future__ import annotations

import logging
import uuid

from sanic import Request
from sanic.models.server_types import ConnInfo
from sanic.response import HTTPResponse, json
from sanic.server.protocols.websocket_protocol import WebSocketProtocol
from websockets.server import ServerProtocol

from core.access import AccessDenied, authenticate, bearer_token
from core.client_address import client_address
from core.database import DATABASE_ERRORS
from core.errors import error_json
from wshub.metrics import HubMetrics
from wshub.registry import LimitReached, Registry, Slot

__all__ = ["admit", "give_back", "slot_of"]

log = logging.getLogger("wshub")


async def admit(request: Request) -> HTTPResponse | None:
    """A request middleware of the hub routes: None lets the upgrade go on."""
    app, config = request.app, request.app.ctx.config
    metrics: HubMetrics = app.ctx.metrics
    if not config.websocket_enabled:
        return _refuse(metrics, 404, "disabled", "live sync is disabled (WEBSOCKET_ENABLED=false)")
    if app.ctx.registry.draining:
        # a rolling restart: the client's reconnect goes to another replica, or to this one restarted
        return _refuse(metrics, 503, "stopping", "the hub is stopping; connect again")
    refused_upgrade = _upgrade_refusal(request)
    if refused_upgrade is not None:
        return _refuse(metrics, *refused_upgrade)
    ip = client_address(request.ip, request.headers, config)
    user_id = None
    if request.path.endswith("/anonymous-hub"):
        try:
            request.ctx.auth_request_id = str(uuid.UUID(request.args.get("Token", "")))
        except ValueError:
            return _refuse(metrics, 400, "bad_request", "Token must be an auth request id")
    else:
        try:
            token = bearer_token(request.args, request.headers, allow_query=True)
            caller = await authenticate(token, app.ctx.verifier, app.ctx.pool)
        except AccessDenied as error:
            log.info("refused hub connection from %s: %s", ip, error.reason)
            metrics.refused.labels("unauthorized").inc()
            return json(error_json("Unauthorized"), status=401)
        except DATABASE_ERRORS as error:
            log.warning("cannot check a hub token: database unavailable (%s)", error)
            return _refuse(metrics, 503, "unavailable", "temporarily unavailable")
        request.ctx.caller = caller
        user_id = str(caller.user_id)
    registry: Registry = app.ctx.registry
    give_back(registry, request.conn_info)  # one slot per TCP connection, never two
    try:
        slot = registry.reserve(ip, user_id)
    except LimitReached as limit:
        if limit.hub_full:
            return _refuse(metrics, 503, "full", limit.reason)
        return _refuse(metrics, 429, "limit", limit.reason)
    # on the TCP connection, not the request: the one place its end can always be seen (app.py)
    request.conn_info.ctx.hub_slot = slot
    return None


def slot_of(request: Request) -> Slot:
    """The slot admission took for this request."""
    slot: Slot = request.conn_info.ctx.hub_slot
    return slot


def give_back(registry: Registry, conn_info: ConnInfo | None) -> None:
    """Release the slot taken for a request on this connection, if one is still held."""
    if conn_info is None:
        return
    slot: Slot | None = getattr(conn_info.ctx, "hub_slot", None)
    if slot is not None:
        conn_info.ctx.hub_slot = None
        registry.release(slot)


def _upgrade_refusal(request: Request) -> tuple[int, str, str] | None:
    """Why the request is no WebSocket upgrade, asked of the library that does the upgrade.

    Sanic would raise for such a request after this point and log it as a server error, with the
    URL and so the client's token; refused here it is an ordinary 4xx.
    """
    response = ServerProtocol().accept(WebSocketProtocol.sanic_request_to_ws_request(request))
    if response.status_code == 101:
        return None
    label = "not_websocket" if response.status_code == 426 else "bad_upgrade"
    return response.status_code, label, response.body.decode(errors="replace").splitlines()[0]


def _refuse(metrics: HubMetrics, status: int, label: str, reason: str) -> HTTPResponse:
    log.info("refused hub connection: %s", reason)
    metrics.refused.labels(label).inc()
    return json(error_json(reason), status=status)
