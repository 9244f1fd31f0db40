"""The WebSocket handlers: they move frames between a client's socket and its Session.

A handler runs once per upgrade and returns at once: it hands the socket (websocket.py) a
:class:`_Client`, which the socket calls with each message and at its end, so a client costs no
task while it is connected.

1. Handshake: client frames go into the Session until it names a protocol or refuses (or the
   handshake deadline passes); a refusal is written and the socket closed.
2. Served: a Connection writes everything from here on; the client's frames go into the
   session through it, and the connection is registered so events reach it.
3. Ended: unregistered, the slot admission took given back, and counted and logged by the
   session's typed close reason. Only a goodbye (the hub's close, waiting for the client's
   answer) runs as a task, while it lasts.

A failure in the hub's own code ends that one connection (1011, ``internal_error``) and is
logged by who the client is, never by the request's URL, which carries its token.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from sanic import Request

from core import access_log
from core.access import Caller
from wshub.admission import slot_of
from wshub.connection import Connection
from wshub.framing import frame
from wshub.metrics import HubMetrics
from wshub.registry import Registry, Slot
from wshub.session import CloseReason, Frame, Session, State
from wshub.turns import Turns
from wshub.websocket import WebSocket

__all__ = ["ANONYMOUS_MAX_MESSAGE_SIZE", "Clients", "anonymous_socket", "hub_socket", "serve_anonymous",
           "serve_user"]

log = logging.getLogger("wshub")

#: The anonymous hub hears a handshake, pings and a Close: nothing larger than a handshake.
ANONYMOUS_MAX_MESSAGE_SIZE = 4096


class Clients:
    """What the clients of one hub share: where they register, what counts them, their limits, and
    those still in their handshake (the registry holds only those past it)."""

    def __init__(self, registry: Registry, metrics: HubMetrics, *, handshake_timeout: float, send_buffer: int,
                 turns: Turns | None = None) -> None:
        self.registry = registry
        self.metrics = metrics
        self.handshake_timeout = handshake_timeout
        self.send_buffer = send_buffer
        self.handshaking: set[_Client] = set()
        #: where a socket's input waits its turn until its handshake is read (turns.py), like the
        #: steps before its upgrade: a storm's handshakes do not hold up the clients already in
        self.turns = turns or Turns()

    def close_handshaking(self, reason: CloseReason) -> None:
        """End every socket still in its handshake (the hub is stopping)."""
        for client in list(self.handshaking):
            client.end(reason)


async def hub_socket(request: Request, ws: WebSocket) -> None:
    serve_user(request.app, ws, _upgraded(request), request.ctx.caller)


async def anonymous_socket(request: Request, ws: WebSocket) -> None:
    serve_anonymous(request.app, ws, _upgraded(request), request.ctx.auth_request_id)


def _upgraded(request: Request) -> Slot:
    slot = slot_of(request)
    # the socket gives it back at its end: the request's end (app.py) comes before that
    request.conn_info.ctx.hub_slot = None
    access_log.upgraded(request)
    return slot


def serve_user(app: Any, ws: WebSocket, slot: Slot, caller: Caller) -> None:
    """Serve an upgraded socket of a signed-in client, which holds ``slot`` from now on."""
    _serve(app, ws, slot, "user", app.ctx.config.hub_max_message_size, float(caller.claims["exp"]),
           user_id=str(caller.user_id), device_identifier=caller.device_identifier,
           device_id=str(caller.device_id) if caller.device_id else None)


def serve_anonymous(app: Any, ws: WebSocket, slot: Slot, auth_request_id: str) -> None:
    """Serve an upgraded socket of a device waiting for a login approval."""
    _serve(app, ws, slot, "anonymous", ANONYMOUS_MAX_MESSAGE_SIZE, time.time() + app.ctx.anonymous_lifetime,
           auth_request_id=auth_request_id)


def _serve(app: Any, ws: WebSocket, slot: Slot, hub: str, max_message_size: int, expires_at: float,
           **identity: Any) -> None:
    client = _Client(app.ctx.clients, ws, slot, hub, Session(max_message_size), expires_at, identity)
    client.start()
    ws.serve(client, max_message_size)


class _Client:
    """One socket's listener, from its upgrade to its end; see the module docstring."""

    __slots__ = ("clients", "ws", "slot", "hub", "session", "expires_at", "identity", "connection", "who",
                 "_deadline")

    def __init__(self, clients: Clients, ws: WebSocket, slot: Slot, hub: str, session: Session, expires_at: float,
                 identity: dict[str, Any]) -> None:
        self.clients = clients
        self.ws = ws
        self.slot: Slot | None = slot
        self.hub = hub
        self.session = session
        self.expires_at = expires_at
        self.identity: dict[str, Any] | None = identity
        self.connection: Connection | None = None
        # a string, not the connection: a log record kept by a handler must not keep it alive
        self.who = slot.ip
        self._deadline: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self.clients.handshaking.add(self)
        self.ws.turns = self.clients.turns
        self._deadline = asyncio.get_running_loop().call_later(self.clients.handshake_timeout, self._no_handshake)

    # -- from the socket ------------------------------------------------------------------------

    def received(self, data: Frame) -> None:
        try:
            if self.connection is not None:
                self.connection.receive(data)
            elif self.session.state is State.AWAITING_HANDSHAKE:
                self.session.receive(data)
                self._handshake_ended()
        except Exception:
            self._failed()

    def lost(self) -> None:
        if self.connection is not None:
            self.connection.lost()  # its end follows (_finish)
        elif self.slot is not None:
            self._ended()

    # -- the handshake ------------------------------------------------------------------------

    def _no_handshake(self) -> None:
        self._deadline = None
        timeout = self.clients.handshake_timeout
        self.session.close(CloseReason.NO_HANDSHAKE, f"no handshake within {timeout:g} s")
        try:
            self._handshake_ended()
        except Exception:
            self._failed()

    def end(self, reason: CloseReason) -> None:
        """End a socket still in its handshake."""
        self.session.close(reason)
        self._handshake_ended()

    def _handshake_ended(self) -> None:
        session = self.session
        if session.state is State.AWAITING_HANDSHAKE:
            return
        self._stop_waiting()
        ws = self.ws
        # the reply or the refusal, and answers to what came in the same frame
        for payload in session.data_to_send():
            ws.transport.write(frame(payload))
        if session.state is State.OPEN:
            identity, self.identity = self.identity or {}, None
            connection = Connection(ws, session, ip=self.who, send_buffer=self.clients.send_buffer,
                                    expires_at=self.expires_at, **identity)
            self.connection = connection
            self.who = repr(connection)
            self.clients.registry.add(connection)
            self.clients.metrics.connections.labels(self.hub).inc()
            connection.on_ending = self._finish
        else:
            assert session.closing is not None
            ws.end(session.closing.code, session.closing.text)

    def _stop_waiting(self) -> None:
        self.clients.handshaking.discard(self)
        self.ws.turns = None  # from now on its input is read where it arrives
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    # -- the end ------------------------------------------------------------------------------

    def _finish(self) -> None:
        """The session left OPEN: unregistered at once, then its goodbye goes out."""
        connection = self.connection
        assert connection is not None
        self.clients.registry.remove(connection)
        self.clients.metrics.connections.labels(self.hub).dec()
        goodbye = asyncio.ensure_future(self._goodbye(connection))
        _goodbyes.add(goodbye)
        goodbye.add_done_callback(_goodbyes.discard)

    async def _goodbye(self, connection: Connection) -> None:
        try:
            await connection.finish()
        finally:
            self._ended()

    def _failed(self) -> None:
        """A bug in the hub's handling of this client: its connection ends, the others go on."""
        log.error("hub connection of %s failed", self.who, exc_info=True)
        if self.connection is not None:
            self.connection.close(CloseReason.INTERNAL_ERROR)
            return
        closing = self.session.close(CloseReason.INTERNAL_ERROR)
        self._stop_waiting()
        if closing is not None:
            self.ws.fail(closing.code, closing.text)

    def _ended(self) -> None:
        """Once: the slot given back, the end counted and logged."""
        slot, self.slot = self.slot, None
        if slot is None:
            return
        self._stop_waiting()
        # the socket and this listener refer to each other: let go, so no collection is needed
        self.ws.release()
        self.connection = None
        self.clients.registry.release(slot)
        closing = self.session.connection_closed()
        self.clients.metrics.session_ended(closing.reason)
        log.log(logging.DEBUG if closing.reason.by_client else logging.INFO, "closed %s: %s", self.who, closing)


#: Goodbyes under way: a task that nothing refers to may be collected.
_goodbyes: set[asyncio.Future[None]] = set()
