"""The WebSocket handlers: they move frames between a client's socket and its Session.

1. Handshake: client frames go into the Session until it names a protocol or refuses (or the
   handshake deadline passes); a refusal is written and the socket closed.
2. Served: a Connection writes everything from here on; the client's frames go into the
   session through it, and the connection is registered so events reach it.
3. Ended: unregistered, the slot admission took given back, and counted and logged by the
   session's typed close reason. Once the socket is gone, what the client sent and the hub never
   read is taken from Sanic and dropped (``_let_go_of_unread``).

A failure in the hub's own code ends that one connection (1011, ``internal_error``) and is
logged by who the client is, never by the request's URL, which carries its token.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from sanic import Request
from sanic.exceptions import WebsocketClosed
from sanic.server.websockets.impl import WebsocketImplProtocol
from websockets.exceptions import ConnectionClosed

from core import access_log
from core.access import Caller
from wshub.admission import give_back, slot_of
from wshub.connection import Connection
from wshub.metrics import HubMetrics
from wshub.registry import Registry
from wshub.session import CloseReason, Frame, Session, State

__all__ = ["ANONYMOUS_MAX_MESSAGE_SIZE", "anonymous_socket", "hub_socket"]

log = logging.getLogger("wshub")

#: The anonymous hub hears a handshake, pings and a Close: nothing larger than a handshake.
ANONYMOUS_MAX_MESSAGE_SIZE = 4096


class _ClientGone(Exception):
    """Raised when the client's socket ended while a frame was awaited."""


async def hub_socket(request: Request, ws: WebsocketImplProtocol) -> None:
    caller: Caller = request.ctx.caller
    await _run(request, ws, "user", request.app.ctx.config.hub_max_message_size, float(caller.claims["exp"]),
               user_id=str(caller.user_id), device_identifier=caller.device_identifier,
               device_id=str(caller.device_id) if caller.device_id else None)


async def anonymous_socket(request: Request, ws: WebsocketImplProtocol) -> None:
    _limit_incoming(ws, ANONYMOUS_MAX_MESSAGE_SIZE)
    await _run(request, ws, "anonymous", ANONYMOUS_MAX_MESSAGE_SIZE,
               time.time() + request.app.ctx.anonymous_lifetime, auth_request_id=request.ctx.auth_request_id)


async def _run(request: Request, ws: WebsocketImplProtocol, hub: str, max_message_size: int, expires_at: float,
               **identity: Any) -> None:
    app, config = request.app, request.app.ctx.config
    metrics: HubMetrics = app.ctx.metrics
    registry: Registry = app.ctx.registry
    ip = slot_of(request).ip
    access_log.upgraded(request)
    session = Session(max_message_size)
    # a string, not the connection: a log record kept by a handler must not keep it alive
    who = ip
    try:
        await _handshake(ws, session, config.hub_handshake_timeout)
        # the reply or the refusal, and answers to what came in the same frame
        for frame in session.data_to_send():
            await ws.send(frame)
        if session.state is State.OPEN:
            connection = Connection(ws, session, ip=ip, send_buffer=config.hub_send_buffer, expires_at=expires_at,
                                    **identity)
            who = repr(connection)
            await _serve(ws, connection, registry, metrics.connections.labels(hub))
        else:
            assert session.closing is not None
            await ws.close(session.closing.code, session.closing.text)
    except (_ClientGone, ConnectionClosed, WebsocketClosed):
        pass  # the client went away: an ordinary end
    except Exception:
        log.error("hub connection of %s failed", who, exc_info=True)
        closing = session.close(CloseReason.INTERNAL_ERROR)
        if closing is not None:
            ws.fail_connection(closing.code, closing.text)
    finally:
        give_back(registry, request.conn_info)
        _let_go_of_unread(ws)
        closing = session.connection_closed()
        metrics.session_ended(closing.reason)
        log.log(logging.DEBUG if closing.reason.by_client else logging.INFO, "closed %s: %s", who, closing)


async def _handshake(ws: WebsocketImplProtocol, session: Session, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while session.state is State.AWAITING_HANDSHAKE:
        remaining = deadline - loop.time()
        data = await _receive(ws, remaining) if remaining > 0 else None
        if data is None:
            session.close(CloseReason.NO_HANDSHAKE, f"no handshake within {timeout:g} s")
        else:
            session.receive(data)


async def _serve(ws: WebsocketImplProtocol, connection: Connection, registry: Registry, gauge: Any) -> None:
    registry.add(connection)
    gauge.inc()
    reader = asyncio.create_task(_read(ws, connection), name=f"hub-reader-{connection.id}")
    try:
        await connection.ending()
    finally:
        # Sanic cancels this task when the client goes away, maybe more than once: what must
        # happen comes before the first await.
        registry.remove(connection)
        gauge.dec()
        reader.cancel()
        await connection.finish()
        await asyncio.gather(reader, return_exceptions=True)


async def _read(ws: WebsocketImplProtocol, connection: Connection) -> None:
    """Feed the client's frames into its session until the session leaves OPEN."""
    try:
        while connection.session.state is State.OPEN:
            data = await _receive(ws)
            if data is None:
                raise _ClientGone
            connection.receive(data)
    except (_ClientGone, ConnectionClosed, WebsocketClosed):
        connection.lost()
    except Exception:  # a bug must not leave the handler waiting for an end that never comes
        log.error("reading from %s failed", repr(connection), exc_info=True)
        connection.close(CloseReason.INTERNAL_ERROR)


async def _receive(ws: WebsocketImplProtocol, timeout: float | None = None) -> Frame | None:
    """The client's next frame, or None when the timeout passed first."""
    try:
        return await ws.recv(timeout)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        # Sanic cancels a pending receive when the client's close or end of stream arrives
        raise _ClientGone from None


#: Drains waiting for their socket's end: a task that nothing refers to may be collected.
_draining: set[asyncio.Task[None]] = set()


def _let_go_of_unread(ws: WebsocketImplProtocol) -> None:
    """Once the socket is gone, take from Sanic the messages the client sent and the hub never read.

    Sanic hands the frames of each TCP read to a task of its own, which waits until the handler
    takes them. After a session's end the handler reads no more, and that task would wait for
    ever, holding the frames and the whole connection until a full garbage collection: long after
    the slot was given back, and for each connection a client opens in a row. Nothing arrives
    after the socket's end, so what is taken then is all there is, and the task ends.
    """
    assembler = getattr(ws, "assembler", None)
    if assembler is None or not hasattr(ws, "wait_for_connection_lost"):
        return
    drain = asyncio.create_task(_drain(ws, assembler))
    _draining.add(drain)
    drain.add_done_callback(_draining.discard)


async def _drain(ws: WebsocketImplProtocol, assembler: Any) -> None:
    await ws.wait_for_connection_lost()
    idle = 0
    # after each message taken, Sanic's task needs a turn or two of the loop to offer the next
    # (or to hand over to the task with the following read)
    while idle < 3:
        if await assembler.get(0) is None:
            idle += 1
            await asyncio.sleep(0)
        else:
            idle = 0


def _limit_incoming(ws: WebsocketImplProtocol, size: int) -> None:
    """Have the WebSocket layer refuse a larger message (1009) before it buffers it."""
    protocol = getattr(ws, "ws_proto", None)
    # its name in recent websockets releases, then in older ones
    for name in ("max_message_size", "max_size"):
        if hasattr(protocol, name):
            setattr(protocol, name, size)
            return
