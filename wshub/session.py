"""The life of one hub connection, from the WebSocket upgrade to its close.

1. Handshake: the client has a deadline to send ``{"protocol":...,"version":...}\\x1e``;
   nothing is sent to it before the reply.
2. Registered: from here on notifications and pings are queued for it.
3. Reading: pings keep it alive, a Close message ends it, invocations are answered with an
   error completion (the hub has no methods), and bytes that are not SignalR close it with the
   reason. Whatever happens, it leaves the registry.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from wshub.codec import (
    HANDSHAKE_REPLY,
    CodecError,
    Close,
    Completion,
    FramingError,
    HandshakeError,
    HandshakeReader,
    HubProtocol,
    Invocation,
    Message,
    MessageReader,
    StreamInvocation,
    handshake_error_reply,
)
from wshub.connection import CloseCode, Connection
from wshub.registry import Registry

__all__ = ["handshake", "serve_connection"]

log = logging.getLogger(__name__)


async def handshake(ws: Any, timeout: float) -> tuple[HubProtocol, bytes] | None:
    """The negotiated protocol and any bytes after the handshake, or None when refused (closed)."""
    reader = HandshakeReader()
    deadline = time.monotonic() + timeout
    try:
        while True:
            remaining = deadline - time.monotonic()
            data = await ws.recv(timeout=max(remaining, 0.0)) if remaining > 0 else None
            if data is None:
                log.info("refused connection: no handshake within %s s", timeout)
                await ws.close(CloseCode.POLICY, f"no handshake within {timeout:g} s")
                return None
            request = reader.feed(data)
            if request is not None:
                return request.protocol, reader.remainder
    except HandshakeError as error:
        log.info("refused handshake: %s", error.reason)
        await ws.send(handshake_error_reply(error.reason))
        await ws.close(CloseCode.PROTOCOL_ERROR, error.reason[:120])
        return None


async def serve_connection(
    ws: Any, protocol: HubProtocol, remainder: bytes, connection: Connection, registry: Registry,
    max_message_size: int, on_refused: Callable[[str], None],
) -> None:
    await ws.send(HANDSHAKE_REPLY)
    refusal = registry.add(connection)
    if refusal is not None:
        log.info("refused %r: %s", connection, refusal)
        on_refused("limit")
        await ws.close(CloseCode.POLICY, refusal)
        return
    connection.start()
    try:
        await _read(ws, protocol, remainder, connection, max_message_size)
    finally:
        registry.remove(connection)
        if not connection.closing:
            await connection.stop()


async def _read(ws: Any, protocol: HubProtocol, remainder: bytes, connection: Connection, max_size: int) -> None:
    reader = MessageReader(protocol, max_size)
    try:
        messages = reader.feed(remainder)
        while True:
            for message in messages:
                if isinstance(message, Close):
                    await connection.stop()
                    await ws.close(CloseCode.NORMAL, "closed by the client")
                    return
                _answer(message, connection)
            if connection.closing:
                # the hub closes it (logged out, too slow): wait for the writer, then leave
                if connection.done is not None:
                    await asyncio.gather(connection.done, return_exceptions=True)
                return
            data = await _next_frame(ws, connection)
            if data is None:
                return
            messages = reader.feed(data)
    except CodecError as error:
        log.info("closing %r: invalid message: %s", connection, error.reason)
        await connection.stop()
        await ws.send(protocol.encode(Close(error=f"invalid message: {error.reason}")))
        code = CloseCode.TOO_BIG if isinstance(error, FramingError) else CloseCode.INVALID_DATA
        await ws.close(code, error.reason[:120])


async def _next_frame(ws: Any, connection: Connection) -> bytes | str | None:
    """The client's next frame, or None once the socket or the hub's writer is done."""
    receive = asyncio.ensure_future(ws.recv())
    waiters: set[asyncio.Future[Any]] = {receive}
    if connection.done is not None:
        waiters.add(connection.done)
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    if not receive.done():
        receive.cancel()
        await asyncio.gather(receive, return_exceptions=True)
        return None
    return receive.result()


def _answer(message: Message, connection: Connection) -> None:
    # Pings only prove the client alive; the hub exposes no methods to call.
    if isinstance(message, Invocation | StreamInvocation) and message.invocation_id is not None:
        error = f"Unknown hub method '{message.target}'"
        connection.send(connection.protocol.encode(Completion(message.invocation_id, error=error)))
