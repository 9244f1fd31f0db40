"""Checks made before the WebSocket upgrade, so that a refusal is a plain HTTP response.

In order: the hub is enabled and not stopping, the client's address opens connections no faster
than its pace (the cheapest refusal, before any other work: a flood of connections from one
address costs little more than their accepts), the request is a WebSocket upgrade the library
can accept, the caller is who it says (a token on the hub, an auth request id on the anonymous
hub), and one more connection stays within the caps: then its slot is taken in the registry,
before the upgrade, so a socket counts from its first byte, handshake or not. An upgraded socket
takes the slot with it and gives it back at its end (pump.py); a request that ends without an
upgrade gives it back then, whichever way (``give_back``). Each refusal is logged and counted by
a label, except the one at a connection's accept (door.py), which is only counted: in a flood, a
line per refusal would fill the log.

The checks are steps of their own (``opening_refusal``, ``anonymous_id``, ``check_token``,
``token_refusal``, ``take_slot``), each answering a :class:`Refusal` or letting the request on:
the same steps, in the same order, admit a request that Sanic parsed (``admit``, its middleware)
and the plain upgrades that the hub's protocol reads itself (door.py), so the two cannot differ
in what they answer, count or log.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
from sanic import Request
from sanic.helpers import STATUS_CODES
from sanic.models.server_types import ConnInfo
from sanic.response import HTTPResponse, json
from sanic.server.protocols.websocket_protocol import WebSocketProtocol
from websockets.server import ServerProtocol

from core.access import AccessDenied, Caller, account_of, authenticate, bearer_token, caller_of, denied_token
from core.client_address import client_address
from core.database import DATABASE_ERRORS
from core.errors import error_json
from core.headers import add_headers
from core.tokens import TokenError, UnknownKeyId
from wshub.metrics import HubMetrics
from wshub.registry import LimitReached, Registry, Slot
from wshub.tally import Tally

__all__ = ["PACED_OUT", "Refusal", "StampLookups", "admit", "anonymous_id", "answer_bytes", "check_token",
           "give_back", "opening_refusal", "pace", "refused", "slot_of", "take_slot", "token_refusal"]

log = logging.getLogger("wshub")


@dataclass(frozen=True, slots=True)
class Refusal:
    """An admission check's answer: the HTTP status, the metric's label, the message of the body,
    and what the log line says after "refused hub connection"."""

    status: int
    label: str
    message: str
    logged: str

    @classmethod
    def of(cls, status: int, label: str, reason: str) -> Refusal:
        return cls(status, label, reason, f": {reason}")


async def admit(request: Request) -> HTTPResponse | None:
    """A request middleware of the hub routes: None lets the upgrade go on."""
    app = request.app
    ip = client_address(request.ip, request.headers, app.ctx.config)
    refusal = opening_refusal(app, ip, _paced_at_accept(request.conn_info), lambda: _upgrade_refusal(request))
    user_id = None
    if refusal is None and request.path.endswith("/anonymous-hub"):
        found = anonymous_id(request.args)
        if isinstance(found, Refusal):
            refusal = found
        else:
            request.ctx.auth_request_id = found
    elif refusal is None:
        try:
            caller = await check_token(app, bearer_token(request.args, request.headers, allow_query=True))
        except Exception as error:
            refusal = token_refusal(error, ip)
        else:
            request.ctx.caller = caller
            user_id = str(caller.user_id)
    if refusal is None:
        give_back(app.ctx.registry, request.conn_info)  # one slot per TCP connection, never two
        slot = take_slot(app, ip, user_id)
        if not isinstance(slot, Refusal):
            # on the TCP connection, not the request: the one place its end can always be seen (app.py)
            request.conn_info.ctx.hub_slot = slot
            return None
        refusal = slot
    refused(app.ctx.metrics, refusal)
    return json(error_json(refusal.message), status=refusal.status)


# -- the steps, shared with door.py ---------------------------------------------------------------


def opening_refusal(app: Any, ip: str, paced: bool,
                    upgrade_refusal: Callable[[], tuple[int, str, str] | None]) -> Refusal | None:
    """The checks before the caller's: enabled, not stopping, the address's pace (unless the
    connection was ``paced`` at its accept), and the upgrade itself."""
    if not app.ctx.config.websocket_enabled:
        return Refusal.of(404, "disabled", "live sync is disabled (WEBSOCKET_ENABLED=false)")
    if app.ctx.registry.draining:
        # a rolling restart: the client's reconnect goes to another replica, or to this one restarted
        return Refusal.of(503, "stopping", "the hub is stopping; connect again")
    if not paced and not pace(app, ip):
        return Refusal.of(429, "rate", PACED_OUT)
    refused_upgrade = upgrade_refusal()
    return None if refused_upgrade is None else Refusal.of(*refused_upgrade)


def anonymous_id(args: Mapping[str, Any]) -> str | Refusal:
    """The auth request id an anonymous-hub client waits on."""
    try:
        return str(uuid.UUID(args.get("Token", "")))
    except ValueError:
        return Refusal.of(400, "bad_request", "Token must be an auth request id")


def check_token(app: Any, token: str | None) -> asyncio.Future[Caller]:
    """The caller behind a hub token, as core.access.authenticate finds it, with the account's
    stamp read in a batch (StampLookups). A future, not a coroutine: door.py goes on from its
    callback, with no task per client. Fails with what ``token_refusal`` answers."""
    loop = asyncio.get_running_loop()
    verifier, pool, stamps = app.ctx.verifier, app.ctx.pool, app.ctx.stamps
    caller: asyncio.Future[Caller] = loop.create_future()
    try:
        if not token:
            raise AccessDenied("no access token")
        try:
            claims = verifier.check(token)
        except UnknownKeyId:
            # a key this process does not know yet: reloading the keys is a query (rare, after a rotation)
            return asyncio.ensure_future(authenticate(token, verifier, pool, find_user=stamps))
        except TokenError as error:
            raise denied_token(error) from None
        user_id, device = account_of(claims)
    except AccessDenied as denied:
        caller.set_exception(denied)
        return caller

    def found(row: asyncio.Future[asyncpg.Record | None]) -> None:
        if caller.done():
            return
        if row.cancelled():
            caller.cancel()
        elif (error := row.exception()) is not None:
            caller.set_exception(error)
        else:
            try:
                caller.set_result(caller_of(claims, device, row.result()))
            except AccessDenied as denied:
                caller.set_exception(denied)

    stamps.lookup(pool, user_id, device).add_done_callback(found)
    return caller


def token_refusal(error: Exception, ip: str) -> Refusal:
    """The refusal for a failed ``check_token``; an error that is none (a bug) is raised again."""
    if isinstance(error, AccessDenied):
        return Refusal(401, "unauthorized", "Unauthorized", f" from {ip}: {error.reason}")
    if isinstance(error, DATABASE_ERRORS):
        log.warning("cannot check a hub token: database unavailable (%s)", error)
        return Refusal.of(503, "unavailable", "temporarily unavailable")
    raise error


def take_slot(app: Any, ip: str, user_id: str | None) -> Slot | Refusal:
    """The last check: one more connection within the caps, its slot taken."""
    registry: Registry = app.ctx.registry
    if registry.draining:  # it began while the token was being checked
        return Refusal.of(503, "stopping", "the hub is stopping; connect again")
    try:
        return registry.reserve(ip, user_id)
    except LimitReached as limit:
        return Refusal.of(503 if limit.hub_full else 429, "full" if limit.hub_full else "limit", limit.reason)


def refused(metrics: HubMetrics, refusal: Refusal) -> None:
    """Log and count a refusal."""
    log.info("refused hub connection%s", refusal.logged)
    metrics.refused.labels(refusal.label).inc()


def answer_bytes(status: int, message: str) -> bytes:
    """A refusal written on the wire by the hub itself, as Sanic would answer it (the same JSON
    body and headers), and the connection closed after it."""
    response = json(error_json(message), status=status)
    add_headers(response)
    return (b"HTTP/1.1 %d %s\r\ncontent-length: %d\r\nconnection: close\r\n" % (
        status, STATUS_CODES.get(status, b"UNKNOWN"), len(response.body or b""))
        + b"".join(b"%s: %s\r\n" % header for header in response.processed_headers)
        + b"\r\n" + (response.body or b""))


def pace(app: Any, ip: str) -> bool:
    """Whether the address may open one more connection now."""
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
        return await self.lookup(pool, user_id, device_identifier)

    def lookup(self, pool: asyncpg.Pool, user_id: uuid.UUID,
               device_identifier: str | None) -> asyncio.Future[asyncpg.Record | None]:
        """The row, once the batch it goes in was read."""
        found: asyncio.Future[asyncpg.Record | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault((user_id, device_identifier), []).append(found)
        if self._reader is None:
            self._reader = asyncio.create_task(self._read(pool), name="hub-stamps")
        return found

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
