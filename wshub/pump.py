"""The WebSocket handlers: they move frames between a client's socket and its Session.

1. Handshake: client frames go into the Session until it names a protocol or refuses (or the
   handshake deadline passes); a refusal is written and the socket closed.
2. Served: a Connection writes everything from here on; the client's frames go into the
   session through it, and the connection is registered so events reach it.
3. Ended: unregistered, and counted and logged by the session's typed close reason.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sanic import Request
from sanic.exceptions import WebsocketClosed
from sanic.server.websockets.impl import WebsocketImplProtocol
from websockets.exceptions import ConnectionClosed

from wshub.admission import peer
from core.access import Caller
from wshub.connection import Connection
from wshub.metrics import HubMetrics
from wshub.registry import Registry
from wshub.session import CloseReason, Frame, Session, State

__all__ = ["anonymous_socket", "hub_socket"]

log = logging.getLogger("wshub")


class _ClientGone(Exception):
    """Raised when the client's socket ended while a frame was awaited."""


async def hub_socket(request: Request, ws: WebsocketImplProtocol) -> None:
    caller: Caller = request.ctx.caller
    await _run(request, ws, "user", user_id=str(caller.user_id), device_identifier=caller.device_identifier)


async def anonymous_socket(request: Request, ws: WebsocketImplProtocol) -> None:
    await _run(request, ws, "anonymous", auth_request_id=request.ctx.auth_request_id)


async def _run(request: Request, ws: WebsocketImplProtocol, hub: str, **identity: Any) -> None:
    app, config = request.app, request.app.ctx.config
    metrics: HubMetrics = app.ctx.metrics
    session = Session(config.hub_max_message_size)
    ip = peer(request)
    who: object = ip
    try:
        await _handshake(ws, session, config.hub_handshake_timeout)
        # the reply or the refusal, and answers to what came in the same frame
        for frame in session.data_to_send():
            await ws.send(frame)
        if session.state is State.OPEN:
            connection = Connection(ws, session, ip=ip, queue_size=config.hub_send_queue,
                                    on_sent=metrics.messages_out.inc, **identity)
            who = connection
            await _serve(ws, connection, app.ctx.registry, metrics.connections.labels(hub))
        else:
            assert session.closing is not None
            await ws.close(session.closing.code, session.closing.text)
    except (_ClientGone, ConnectionClosed, WebsocketClosed):
        pass  # the client went away: an ordinary end
    finally:
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
    refusal = registry.add(connection)
    if refusal is not None:
        connection.close(CloseReason.LIMIT, refusal)
    else:
        gauge.inc()
    connection.start()
    reader = asyncio.create_task(_read(ws, connection), name=f"hub-reader-{connection.id}")
    try:
        await connection.ending()
    finally:
        # Sanic cancels this task when the client goes away, maybe more than once: what must
        # happen comes before the first await.
        if refusal is None:
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
        log.exception("reading from %r failed", connection)
        connection.lost()


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
