"""Checks made before the WebSocket upgrade, so that a refusal is a plain HTTP response.

In order: the hub is enabled and not stopping, the client's address opens connections no faster
than its pace (the cheapest refusal, before any other work: a flood of connections from one
address costs little more than their accepts), the request is a WebSocket upgrade the library
can accept, the caller is who it says (a token on the hub, an auth request id on the anonymous
hub), and one more connection stays within the caps: then its slot is taken in the registry,
before the upgrade, so a socket counts from its first byte, handshake or not. An upgraded socket
takes the slot with it and gives it back at its end (pump.py); a request that ends without an
upgrade gives it back then, whichever way (``give_back``). Each refusal is logged and counted by
a label, except the one at a connection's accept (``PacedProtocol``), which is only counted: in
a flood, a line per refusal would fill the log.
"""

from __future__ import annotations

import asyncio
import base64
import json as jsonlib
import logging
import time
import uuid
from typing import Any

import asyncpg
from sanic import Request
from sanic.models.server_types import ConnInfo
from sanic.response import HTTPResponse, json
from sanic.server.protocols.websocket_protocol import WebSocketProtocol
from websockets.server import ServerProtocol

from core.access import AccessDenied, authenticate, bearer_token
from core.client_address import client_address, from_proxy
from core.database import DATABASE_ERRORS
from core.errors import error_json
from core.first_byte import FirstByteDeadline
from core.headers import NO_STORE, SECURITY_HEADERS
from wshub.metrics import HubMetrics
from wshub.registry import LimitReached, Registry, Slot
from wshub.tally import Tally
from wshub.wire import WireProtocol

__all__ = ["PacedProtocol", "StampLookups", "admit", "give_back", "slot_of"]

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
    ip = client_address(request.ip, request.headers, config)
    if not _paced_at_accept(request.conn_info) and not _pace(app, ip):
        return _refuse(metrics, 429, "rate", PACED_OUT)
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
            caller = await authenticate(token, app.ctx.verifier, app.ctx.pool, find_user=app.ctx.stamps)
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


class PacedProtocol(FirstByteDeadline, WireProtocol):
    """The hub's protocol (wire.py), pacing connections from the moment they are accepted: when
    the peer is the client itself (no trusted proxy between), a connection past its address's pace
    gets a ready-made 429 and is closed before Sanic reads a byte of it, the cheapest refusal there
    is. A proxied connection is paced at its request, by the address the proxy names (admit). A
    connection that sends nothing is closed soon (core/first_byte.py)."""

    __slots__ = ("paced_out",)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.paced_out = False
        app = self.app
        peer = transport.get_extra_info("peername")
        peer = peer[0] if isinstance(peer, tuple) else None
        if from_proxy(peer, app.ctx.config):
            super().connection_made(transport)
            return
        if not _pace(app, client_address(peer, {}, app.ctx.config)):
            self.paced_out = True
            app.ctx.metrics.refused.labels("rate").inc()
            transport.write(_PACED_OUT_ANSWER)  # type: ignore[attr-defined]
            transport.close()
            return
        super().connection_made(transport)
        self.conn_info.ctx.paced = True

    def data_received(self, data: bytes) -> None:
        if not self.paced_out:
            super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.paced_out:  # Sanic never saw it
            super().connection_lost(exc)


def _pace(app: Any, ip: str) -> bool:
    config = app.ctx.config
    tally: Tally = app.ctx.tally
    return tally.pace(ip, time.monotonic(), config.hub_ratelimit_max_burst, 60 / config.hub_ratelimit_per_minute)


def _paced_at_accept(conn_info: ConnInfo) -> bool:
    """True for the first request of a connection paced when it was accepted; a client that sends
    another request on the same connection is paced again."""
    paced: bool = getattr(conn_info.ctx, "paced", False)
    conn_info.ctx.paced = False
    return paced


PACED_OUT = "too many new connections from this address; try again later"
_PACED_OUT_BODY = jsonlib.dumps(error_json(PACED_OUT)).encode()
_PACED_OUT_ANSWER = (
    "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n"
    f"Content-Length: {len(_PACED_OUT_BODY)}\r\nConnection: close\r\n"
    + "".join(f"{name}: {value}\r\n" for name, value in {**SECURITY_HEADERS, **NO_STORE}.items())
    + "\r\n").encode() + _PACED_OUT_BODY


class StampLookups:
    """The accounts' security stamps that token checks ask for, read together: the lookups made
    while one query is out go in the next one, so a reconnect storm costs a query per batch, not
    one per client (and waits on no pool of a few connections). A ``find_user`` for authenticate."""

    def __init__(self) -> None:
        #: (account, token's device identifier) -> the checks waiting for that row
        self._waiting: dict[tuple[uuid.UUID, str | None], list[asyncio.Future[asyncpg.Record | None]]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def __call__(self, pool: asyncpg.Pool, user_id: uuid.UUID,
                       device_identifier: str | None = None) -> asyncpg.Record | None:
        found: asyncio.Future[asyncpg.Record | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault((user_id, device_identifier), []).append(found)
        if self._reader is None:
            self._reader = asyncio.create_task(self._read(pool), name="hub-stamps")
        return await found

    async def _read(self, pool: asyncpg.Pool) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, {}
                try:
                    rows = await pool.fetch(_STAMPS, [key[0] for key in batch], [key[1] for key in batch])
                except asyncio.CancelledError:
                    for futures in batch.values():
                        for found in futures:
                            found.cancel()
                    raise
                except Exception as error:  # each check answers it (503 for a database down)
                    for futures in batch.values():
                        for found in futures:
                            if not found.done():
                                found.set_exception(error)
                    continue
                stamps = {(row["id"], row["device"]): row for row in rows}
                for key, futures in batch.items():
                    for found in futures:
                        if not found.done():  # its client may have gone meanwhile
                            found.set_result(stamps.get(key))
        finally:
            self._reader = None


# what core.access.find_stamp reads, for many (account, device) pairs at once
_STAMPS = """
    SELECT u.id, u.security_stamp, d.id AS device_id, d.active AS device_active, asked.device
      FROM unnest($1::uuid[], $2::text[]) AS asked (user_id, device)
      JOIN users u ON u.id = asked.user_id
      LEFT JOIN devices d ON d.user_id = u.id AND d.identifier = asked.device
"""


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
    URL and so the client's token; refused here it is an ordinary 4xx. An upgrade as every client
    sends it is recognised at a glance (``_plain_upgrade``); only other requests cost a trial
    upgrade, which is most of the CPU of letting a client in.
    """
    if _plain_upgrade(request.headers):
        return None
    response = ServerProtocol().accept(WebSocketProtocol.sanic_request_to_ws_request(request))
    if response.status_code == 101:
        return None
    label = "not_websocket" if response.status_code == 426 else "bad_upgrade"
    return response.status_code, label, response.body.decode(errors="replace").splitlines()[0]


def _plain_upgrade(headers: Any) -> bool:
    """True for headers that the websockets library surely accepts as an upgrade (RFC 6455 §4.2.1;
    it negotiates no extension or subprotocol here): stricter than the library, never looser."""
    connection = [token.strip().lower() for value in headers.getall("connection", ()) for token in value.split(",")]
    upgrade, key, version = (headers.getall(name, ()) for name in
                             ("upgrade", "sec-websocket-key", "sec-websocket-version"))
    if "upgrade" not in connection or len(upgrade) != 1 or upgrade[0].strip().lower() != "websocket":
        return False
    if len(version) != 1 or version[0] != "13" or len(key) != 1:
        return False
    try:
        return len(base64.b64decode(key[0].encode(), validate=True)) == 16
    except (ValueError, UnicodeEncodeError):
        return False


def _refuse(metrics: HubMetrics, status: int, label: str, reason: str) -> HTTPResponse:
    log.info("refused hub connection: %s", reason)
    metrics.refused.labels(label).inc()
    return json(error_json(reason), status=status)
