"""The notifications hub as a Sanic app: routes, lifecycle, and ``pgwarden hub``.

Routes:

- ``/notifications/hub``: SignalR over WebSocket for signed-in clients (token checked before
  the upgrade: a bad one gets HTTP 401 and no WebSocket).
- ``/notifications/anonymous-hub?Token=<auth request id>``: a device waiting for a login
  approval; no token.
- ``POST /notifications/hub/negotiate``: for SignalR clients that do not skip negotiation.
- ``/alive`` (health) and ``/metrics`` (Prometheus; only with METRICS_TOKEN, as its bearer token).

Startup opens a small pool (token checks), loads the public key, and opens the LISTEN
connection before the port accepts clients; shutdown says goodbye to every client with a
SignalR Close (reconnect allowed) and closes the sockets cleanly.

Every HTTP answer carries the security headers of core/headers.py. Nothing the hub logs names a
request's URL: on the hub it carries the client's token (Sanic's access log is off, and its error
log line is replaced by one with the path alone).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
from dataclasses import dataclass, field

import asyncpg
from sanic import Blueprint, Request, Sanic
from sanic.exceptions import NotFound, Unauthorized
from sanic.handlers import ErrorHandler
from sanic.models.server_types import ConnInfo
from sanic.response import BaseHTTPResponse, HTTPResponse, raw, text

from core import access_log
from core.allocator import keep_large_blocks_returnable, trim_periodically, watches_memory
from core.collector import collect_young_periodically, tenure_survivors
from core.config import Config, redact_dsn
from core.database import nothing_to_reset
from core.first_byte import wait_for_requests
from core.headers import add_headers
from core.negotiate import NEGOTIATE_PATH, negotiate
from core.request import QuietRequest
from core.keyring import KeyRing
from core.tokens import VerifiedTokens
from wshub.admission import StampLookups, admit, give_back
from wshub.connection import close_all
from wshub.delivery import Delivery
from wshub.door import HubProtocol
from wshub.ingress import Ingress, IngressTuning
from wshub.keepalive import DEFAULT_PING_INTERVAL, keep_alive
from wshub.memberships import Memberships, load_from
from wshub.metrics import CONTENT_TYPE, HubMetrics, scrape_allowed
from wshub.pump import Clients, anonymous_socket, hub_socket
from wshub.registry import Registry
from wshub.session import CloseReason
from wshub.tally import LocalTally, Tally
from wshub.turns import Turns

__all__ = ["HubTuning", "create_app", "serve"]

log = logging.getLogger("wshub")

_app_numbers = itertools.count(1)

#: Resident memory an open connection holds (4.9 KiB idle, docs/performance.md, and some room):
#: the hub's growth up to this much per connection it has held at once is live memory, or memory
#: kept for the next connections, and calls for no full collection.
CONNECTION_BYTES = 8 * 1024

#: Seconds a query of the hub's pool may take (a token's stamp, the keys): past it, a connection
#: waiting on its token check is answered 503 rather than held while the database does not answer.
COMMAND_TIMEOUT = 10.0

#: Connections the kernel holds for the hub before it accepts them (capped by net.core.somaxconn).
BACKLOG = 4096


@dataclass(frozen=True)
class HubTuning:
    """Timings that production leaves at their defaults and tests shorten."""

    ping_interval: float = DEFAULT_PING_INTERVAL
    ingress: IngressTuning = field(default_factory=IngressTuning)
    shutdown_grace: float = 2.0
    #: How long a device may wait on the anonymous hub: Bitwarden's auth requests expire after
    #: 15 minutes, and the wait is pointless after that.
    anonymous_lifetime: float = 15 * 60.0


def create_app(config: Config, database_url: str | None = None, *, tuning: HubTuning | None = None,
               tally: Tally | None = None) -> Sanic:
    """The hub; ``tally`` counts connections per address and per user, shared by its workers
    (tally.py; by default this process counts its own)."""
    url = database_url or config.database_url
    if not url:
        raise ValueError("the hub needs a database URL")
    tuning = tuning or HubTuning()

    app = Sanic(f"pgwarden_hub_{next(_app_numbers)}", configure_logging=False, error_handler=_ErrorHandler(),
                request_class=QuietRequest)
    app.config.WEBSOCKET_MAX_SIZE = config.hub_max_message_size
    app.config.KEEP_ALIVE_TIMEOUT = 30
    wait_for_requests(app, config.request_header_timeout)
    # its lines name the URL, and a hub URL carries the client's token
    app.config.ACCESS_LOG = False
    metrics = HubMetrics()
    tally = tally or LocalTally()
    memberships = Memberships(load_from(lambda: app.ctx.pool), lambda user_id, event: delivery.replay(user_id, event))
    registry = Registry(max_connections=config.hub_max_connections,
                        max_anonymous=config.hub_max_anonymous_connections,
                        max_per_user=config.hub_max_connections_per_user,
                        max_per_ip=config.hub_max_connections_per_ip, tally=tally,
                        on_user_arrived=memberships.connected, on_user_left=memberships.disconnected)
    delivery = Delivery(registry, metrics, memberships)
    app.ctx.config = config
    #: the server protocol to run it with (door.py): it paces connections as they are accepted,
    #: admits plain upgrades itself and leaves the rest to Sanic; an upgrade hands the socket to
    #: websocket.py
    app.ctx.protocol = HubProtocol
    #: the steps of letting clients in, a bounded time per turn of the event loop (turns.py)
    app.ctx.turns = Turns()
    app.ctx.clients = Clients(registry, metrics, handshake_timeout=config.hub_handshake_timeout,
                              send_buffer=config.hub_send_buffer, turns=app.ctx.turns)
    app.ctx.metrics = metrics
    app.ctx.registry = registry
    #: the counts and paces of client addresses (tally.py), read by admission
    app.ctx.tally = tally
    app.ctx.memberships = memberships
    app.ctx.anonymous_lifetime = tuning.anonymous_lifetime
    app.ctx.stamps = StampLookups()
    app.ctx.ingress = Ingress(
        url, delivery.deliver, registry.user_ids, tuning=tuning.ingress,
        on_reconnect=metrics.listen_reconnects.inc)

    hub = Blueprint(f"hub_{app.name}")
    hub.on_request(admit)
    hub.add_websocket_route(hub_socket, "/notifications/hub")
    hub.add_websocket_route(anonymous_socket, "/notifications/anonymous-hub")
    app.blueprint(hub)
    app.add_route(negotiate, NEGOTIATE_PATH, methods=["POST"])
    app.add_route(_alive, "/alive", methods=["GET", "HEAD"])
    app.add_route(_metrics, "/metrics", methods=["GET"])
    access_log.install(app)

    @app.on_response
    async def _answered(request: Request, response: BaseHTTPResponse) -> None:
        add_headers(response)
        # an HTTP answer means no WebSocket on this request: a slot admission took goes back
        give_back(registry, request.conn_info)

    # The safety net under the socket handler's own release: when the upgrade fails, or the
    # client leaves before the handler ever runs, the TCP connection's end still gives it back.
    @app.signal("http.lifecycle.complete")
    async def _connection_ended(conn_info: ConnInfo) -> None:
        give_back(registry, conn_info)

    # Registered after the WebSocket routes: Sanic runs stop listeners last-registered first,
    # so clients get their goodbye before Sanic cancels the handlers.
    @app.before_server_start
    async def _start(app: Sanic) -> None:
        # Plain SELECTs that leave no session state behind: a connection needs no reset query (a
        # round trip) each time it goes back to the pool.
        app.ctx.pool = await asyncpg.create_pool(url, min_size=1, max_size=4, reset=nothing_to_reset,
                                                 command_timeout=COMMAND_TIMEOUT)
        # public keys only: the hub never signs, and its role cannot read a private key
        app.ctx.keys = KeyRing(app.ctx.pool)
        await app.ctx.keys.load()
        # a client that reconnects with the same token skips its parse and RSA check (core/tokens.py):
        # room for the token of every connection this worker may hold, so a storm of them coming back hits
        verified = VerifiedTokens(max(4 << 20, config.hub_max_connections * VerifiedTokens.ENTRY_BYTES))
        app.ctx.verifier = app.ctx.keys.verifier(config.token_issuer, verified=verified)
        await app.ctx.ingress.connect()
        app.ctx.tasks = [
            asyncio.create_task(app.ctx.ingress.run(), name="hub-listen"),
            asyncio.create_task(keep_alive(registry, tuning.ping_interval, sent=metrics.messages_out.inc), name="hub-keepalive"),
            asyncio.create_task(app.ctx.keys.keep_fresh(), name="hub-keys"),
            asyncio.create_task(trim_periodically(in_use=lambda: registry.peak * CONNECTION_BYTES), name="hub-trim"),
            asyncio.create_task(collect_young_periodically(), name="hub-collect"),
        ]
        keep_large_blocks_returnable()
        log.info("hub listening for events on database %s", redact_dsn(url))

    @app.before_server_stop
    async def _stop(app: Sanic) -> None:
        registry.draining = True  # first: a socket admitted now would miss the goodbye
        app.ctx.clients.close_handshaking(CloseReason.SHUTDOWN)
        await close_all(list(registry), CloseReason.SHUTDOWN, tuning.shutdown_grace)
        for task in app.ctx.tasks:
            task.cancel()
        await asyncio.gather(*app.ctx.tasks, return_exceptions=True)
        await memberships.close()
        await app.ctx.ingress.close()
        try:
            async with asyncio.timeout(tuning.shutdown_grace):
                await app.ctx.pool.close()
        except TimeoutError:  # a dead link would wait forever for a goodbye
            app.ctx.pool.terminate()

    return app


# -- plain HTTP --------------------------------------------------------------------------------


class _ErrorHandler(ErrorHandler):
    """Sanic's own, but its log line names the path alone: a hub URL carries the client's token."""

    @staticmethod
    def log(request: Request, exception: Exception) -> None:
        if not getattr(exception, "quiet", False) or request.app.config.NOISY_EXCEPTIONS:
            log.error("%s %s failed", request.method, request.path, exc_info=exception)


async def _alive(request: Request) -> HTTPResponse:
    ingress: Ingress = request.app.ctx.ingress
    if not ingress.connected.is_set():
        return text("LISTEN connection down", status=503)
    return text("ok")


async def _metrics(request: Request) -> HTTPResponse:
    # on the hub's public port: served only when METRICS_TOKEN is set, and only to its bearer
    token = request.app.ctx.config.metrics_token
    if token is None:
        raise NotFound(f"Requested URL {request.path} not found")
    if not scrape_allowed(request.headers, token):
        raise Unauthorized("METRICS_TOKEN required", scheme="Bearer")
    return raw(request.app.ctx.metrics.render(), content_type=CONTENT_TYPE)


# -- `pgwarden hub` ------------------------------------------------------------------------------


def serve(config: Config) -> int:
    from core.database import opened
    from wshub.workers import listening_socket, run_workers

    if not config.websocket_enabled:
        log.warning("WEBSOCKET_ENABLED=false: the hub will refuse connections")
    workers = config.hub_worker_count
    with opened(config) as url:
        log.info("hub serving ws://%s:%d/notifications/hub", config.websocket_address, config.websocket_port)
        if workers > 1:
            _refuse_transaction_pooler_first(url)
            return run_workers(config, url, workers)
        serve_socket(config, url, listening_socket(config.websocket_address, config.websocket_port, shared=False))
    return 0


def _refuse_transaction_pooler_first(url: str) -> None:
    """Before the workers start: a worker's refusal would reach the operator as an exit code only."""
    from core.database import DATABASE_ERRORS
    from wshub.ingress import refuse_transaction_pooler

    try:
        asyncio.run(refuse_transaction_pooler(url))
    except DATABASE_ERRORS:
        pass  # no database yet: the workers retry until it answers, and check again


def serve_socket(config: Config, url: str, sock: socket.socket, *, tally: Tally | None = None) -> None:
    """Run one hub on a bound socket in this process until interrupted."""
    app = create_app(config, url, tally=tally)
    # Every connection holds some hundreds of objects for as long as it is open: collections
    # that walked them again stopped the loop for 20-200 ms at 10,000 connections while events
    # waited. Survivors are tenured instead; reference counting frees them when they close.
    if watches_memory():  # the memory upkeep is what finds the cyclic garbage among them
        tenure_survivors()
    # a backlog for a reconnect storm: clients past a full one wait seconds for their SYN's retry
    app.run(sock=sock, single_process=True, protocol=app.ctx.protocol, backlog=BACKLOG, access_log=False, motd=False)
