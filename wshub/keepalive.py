"""The keepalive tick: the SignalR Ping every connection needs at least every 15 s, and the end of
connections whose token (or anonymous wait) has expired.

Clients give up on a server after 30 s of silence, and WebSocket control-frame pings are
invisible to browser JavaScript, so the ping is a data frame: MessagePack ``[6]`` or JSON
``{"type":6}``, each encoded once per tick.

The same tick has each socket send a WebSocket Ping and drop a client that answered none of the
last ones (websocket.py): a link that died silently is found within a few ticks.

A tick pings its connections a slice at a time (``TICK_SLICE``), giving the event loop back
between slices: an event that arrives during a tick waits for one slice, not for every
connection's ping.

Expiry rides on the same tick rather than a timer per connection: the registry hands out the
connections whose second has passed, so a token is honoured at most one tick past its ``exp``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from wshub.codec import Ping
from wshub.delivery import EncodedOnce
from wshub.registry import Registry
from wshub.session import CloseReason
from wshub.websocket import WEBSOCKET_PING

__all__ = ["DEFAULT_PING_INTERVAL", "keep_alive"]

DEFAULT_PING_INTERVAL = 15.0

#: Connections pinged in one turn of the event loop; events are delivered between the turns.
TICK_SLICE = 200


async def keep_alive(registry: Registry, interval: float = DEFAULT_PING_INTERVAL, *,
                     clock: Callable[[], float] = time.time, sent: Callable[[int], None] = lambda count: None) -> None:
    """Runs until cancelled. ``clock`` gives seconds since the epoch, as a token's ``exp`` does;
    ``sent`` counts the pings written."""
    while True:
        await asyncio.sleep(interval)
        for connection in registry.expired(clock()):
            connection.close(CloseReason.EXPIRED)
        ping = EncodedOnce(Ping())
        count = 0
        for number, connection in enumerate(list(registry), 1):
            if connection.ws.keep_alive():
                count += connection.send(ping.for_connection(connection))
                connection.send(WEBSOCKET_PING)  # written with the SignalR Ping, in one system call
            if number % TICK_SLICE == 0:
                # a write per connection, and a Pong read back from each: at 10,000 connections a
                # third of a second of the loop, which events would wait behind taken at once
                await asyncio.sleep(0)
        sent(count)
