"""The notifications hub as a Sanic app: routes, lifecycle, and ``pgwarden hub``.

Routes:

- ``/notifications/hub``: SignalR over WebSocket for signed-in clients (token checked before
  the upgrade: a bad one gets HTTP 401 and no WebSocket).
- ``/notifications/anonymous-hub?Token=<auth request id>``: a device waiting for a login
  approval; no token.
- ``POST /notifications/hub/negotiate``: for SignalR clients that do not skip negotiation.
- ``/alive`` (health) and ``/metrics`` (Prometheus).

Startup opens a small pool (token checks), loads the public key, and opens the LISTEN
connection before the port accepts clients; shutdown says goodbye to every client with a
SignalR Close (reconnect allowed) and closes the sockets cleanly.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from sanic import Blueprint, Request, Sanic
from sanic.exceptions import WebsocketClosed
from sanic.response import HTTPResponse, json, raw, text
from sanic.server.protocols.websocket_protocol import WebSocketProtocol
from sanic.server.websockets.impl import WebsocketImplProtocol
from websockets.exceptions import ConnectionClosed
from websockets.server import ServerProtocol

from core.access import AccessDenied, Caller, authenticate, bearer_token
from core.config import Config, redact_dsn
from core.database import DATABASE_ERRORS
from core.negotiate import NEGOTIATE_PATH, negotiate
from core.keyring import KeyRing
from wshub.codec import Close
from wshub.connection import CloseCode, Connection
from wshub.delivery import Delivery, EncodedOnce
from wshub.ingress import Ingress, IngressTuning
from wshub.keepalive import DEFAULT_PING_INTERVAL, keep_alive
from wshub.metrics import CONTENT_TYPE, HubMetrics
from wshub.registry import Registry
from wshub.session import handshake, serve_connection

__all__ = ["HubTuning", "create_app", "serve"]

log = logging.getLogger("wshub")

_app_numbers = itertools.count(1)


@dataclass(frozen=True)
class HubTuning:
    """Timings that production leaves at their defaults and tests shorten."""

    ping_interval: float = DEFAULT_PING_INTERVAL
    ingress: IngressTuning = field(default_factory=IngressTuning)
    shutdown_grace: float = 2.0


def create_app(config: Config, database_url: str | None = None, *, tuning: HubTuning | None = None) -> Sanic:
    url = database_url or config.database_url
    if not url:
        raise ValueError("the hub needs a database URL")
    tuning = tuning or HubTuning()

    app = Sanic(f"pgwarden_hub_{next(_app_numbers)}", configure_logging=False)
    app.config.WEBSOCKET_MAX_SIZE = config.hub_max_message_size
    app.config.KEEP_ALIVE_TIMEOUT = 30
    metrics = HubMetrics()
    registry = Registry(config.hub_max_connections_per_user, config.hub_max_connections_per_ip)
    delivery = Delivery(registry, metrics)
    app.ctx.config = config
    app.ctx.metrics = metrics
    app.ctx.registry = registry
    app.ctx.ingress = Ingress(
        url, delivery.deliver, registry.user_ids, tuning=tuning.ingress,
        on_reconnect=metrics.listen_reconnects.inc)

    hub = Blueprint(f"hub_{app.name}")
    hub.on_request(_admit)
    hub.add_websocket_route(_hub_socket, "/notifications/hub")
    hub.add_websocket_route(_anonymous_socket, "/notifications/anonymous-hub")
    app.blueprint(hub)
    app.add_route(negotiate, NEGOTIATE_PATH, methods=["POST"])
    app.add_route(_alive, "/alive", methods=["GET", "HEAD"])
    app.add_route(_metrics, "/metrics", methods=["GET"])

    # Registered after the WebSocket routes: Sanic runs stop listeners last-registered first,
    # so clients get their goodbye before Sanic cancels the handlers.
    @app.before_server_start
    async def _start(app: Sanic) -> None:
        app.ctx.pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
        # public keys only: the hub never signs, and its role cannot read a private key
        app.ctx.keys = KeyRing(app.ctx.pool)
        await app.ctx.keys.load()
        app.ctx.verifier = app.ctx.keys.verifier(config.token_issuer)
        await app.ctx.ingress.connect()
        app.ctx.tasks = [
            asyncio.create_task(app.ctx.ingress.run(), name="hub-listen"),
            asyncio.create_task(keep_alive(registry, tuning.ping_interval), name="hub-keepalive"),
            asyncio.create_task(app.ctx.keys.keep_fresh(), name="hub-keys"),
        ]
        log.info("hub listening for events on database %s", redact_dsn(url))

    @app.before_server_stop
    async def _stop(app: Sanic) -> None:
        goodbye = EncodedOnce(Close(error=None, allow_reconnect=True))
        connections = list(registry)
        for connection in connections:
            connection.send(goodbye.for_connection(connection))
            connection.close_when_sent(CloseCode.GOING_AWAY, "server shutting down")
        writers = [c.done for c in connections if c.done is not None]
        if writers:
            await asyncio.wait(writers, timeout=tuning.shutdown_grace)
        for task in app.ctx.tasks:
            task.cancel()
        await asyncio.gather(*app.ctx.tasks, return_exceptions=True)
        await app.ctx.ingress.close()
        try:
            await asyncio.wait_for(app.ctx.pool.close(), tuning.shutdown_grace)
        except TimeoutError:  # a dead link would wait forever for a goodbye
            app.ctx.pool.terminate()

    return app


# -- before the upgrade --------------------------------------------------------------------------


def _peer(request: Request) -> str:
    """The client's address: the one the proxy passed in IP_HEADER when that is an address."""
    header = request.app.ctx.config.ip_header
    if header:
        claimed = request.headers.get(header, "").split(",")[0].strip()
        try:
            return str(ipaddress.ip_address(claimed))
        except ValueError:
            pass
    return request.remote_addr or request.ip or "unknown"


async def _admit(request: Request) -> HTTPResponse | None:
    """Checks made before the WebSocket upgrade, so a refusal is a plain HTTP response."""
    app, config = request.app, request.app.ctx.config
    metrics: HubMetrics = app.ctx.metrics
    if not config.websocket_enabled:
        return _refuse(metrics, 404, "disabled", "live sync is disabled (WEBSOCKET_ENABLED=false)")
    refused_upgrade = _upgrade_refusal(request)
    if refused_upgrade is not None:
        return _refuse(metrics, *refused_upgrade)
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
            log.info("refused hub connection from %s: %s", _peer(request), error.reason)
            metrics.refused.labels("unauthorized").inc()
            return json({"message": "Unauthorized", "object": "error"}, status=401)
        except DATABASE_ERRORS as error:
            log.warning("cannot check a hub token: database unavailable (%s)", error)
            return _refuse(metrics, 503, "unavailable", "temporarily unavailable")
        request.ctx.caller = caller
        user_id = str(caller.user_id)
    reason = app.ctx.registry.refusal(_peer(request), user_id)
    if reason is not None:
        return _refuse(metrics, 429, "limit", reason)
    return None


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
    return json({"message": reason, "object": "error"}, status=status)


# -- WebSocket handlers --------------------------------------------------------------------------


async def _hub_socket(request: Request, ws: WebsocketImplProtocol) -> None:
    caller: Caller = request.ctx.caller
    await _run(request, ws, "user", user_id=str(caller.user_id), device=caller.device_identifier)


async def _anonymous_socket(request: Request, ws: WebsocketImplProtocol) -> None:
    await _run(request, ws, "anonymous", auth_request_id=request.ctx.auth_request_id)


async def _run(request: Request, ws: WebsocketImplProtocol, hub: str, **identity: Any) -> None:
    app, config = request.app, request.app.ctx.config
    metrics: HubMetrics = app.ctx.metrics
    negotiated = await handshake(ws, config.hub_handshake_timeout)
    if negotiated is None:
        metrics.refused.labels("handshake").inc()
        return
    protocol, remainder = negotiated
    connection = Connection(
        ws, protocol, ip=_peer(request), queue_size=config.hub_send_queue,
        on_sent=metrics.messages_out.inc,
        on_dropped=lambda reason: metrics.dropped.labels(_reason_label(reason)).inc(),
        **identity)
    gauge = metrics.connections.labels(hub)
    gauge.inc()
    try:
        await serve_connection(ws, protocol, remainder, connection, app.ctx.registry,
                               config.hub_max_message_size, lambda label: metrics.refused.labels(label).inc())
    except (ConnectionClosed, WebsocketClosed):
        pass  # the client went away: an ordinary end
    finally:
        gauge.dec()


def _reason_label(reason: str) -> str:
    return reason.split(";")[0].split(":")[0].strip().replace(" ", "_")[:40]


# -- plain HTTP --------------------------------------------------------------------------------


async def _alive(request: Request) -> HTTPResponse:
    ingress: Ingress = request.app.ctx.ingress
    if not ingress.connected.is_set():
        return text("LISTEN connection down", status=503)
    return text("ok")


async def _metrics(request: Request) -> HTTPResponse:
    return raw(request.app.ctx.metrics.render(), content_type=CONTENT_TYPE)


# -- `pgwarden hub` ------------------------------------------------------------------------------


def serve(config: Config) -> int:
    from core.database import opened

    if not config.websocket_enabled:
        log.warning("WEBSOCKET_ENABLED=false: the hub will refuse connections")
    with opened(config) as url:
        app = create_app(config, url)
        log.info("hub serving ws://%s:%d/notifications/hub", config.websocket_address, config.websocket_port)
        app.run(host=config.websocket_address, port=config.websocket_port, single_process=True,
                access_log=False, motd=False)
    return 0
