"""The keepalive tick: the SignalR Ping every connection needs at least every 15 s, and the end of
connections whose token (or anonymous wait) has expired.

Clients give up on a server after 30 s of silence, and WebSocket control-frame pings are
invisible to browser JavaScript, so the ping is a data frame: MessagePack ``[6]`` or JSON
``{"type":6}``, each encoded once per tick.

The same tick has each socket send a WebSocket Ping and drop a client that answered none of the
last ones (websocket.py): a link that died silently is found within a few ticks.

A tick's pings are spread over the second half of its interval, a slice every ``PING_PAUSE``:
written all at once, 10,000 Pings and the 10,000 Pongs they bring back held the event loop for a
third of a second in slices of several milliseconds, and events waited behind them
(docs/performance.md, "Latency"). The first half is a wait, so that no connection, however the
registry changed since the last tick, goes more than one and a half intervals without a ping:
22.5 s at 15 s, within the 30 s after which clients give up on a silent server.

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

__all__ = ["DEFAULT_PING_INTERVAL", "PING_PAUSE", "keep_alive"]

DEFAULT_PING_INTERVAL = 15.0

#: seconds between the slices of a tick (when there are connections enough for that many slices)
PING_PAUSE = 0.02
#: the least pause after a slice, however late: a tick of 375 slices stretches by 0.75 s at most
CATCH_UP_PAUSE = 0.002


async def keep_alive(registry: Registry, interval: float = DEFAULT_PING_INTERVAL, *,
                     clock: Callable[[], float] = time.time, sent: Callable[[int], None] = lambda count: None) -> None:
    """Runs until cancelled. ``clock`` gives seconds since the epoch, as a token's ``exp`` does;
    ``sent`` counts the pings written. Each slice keeps to its own time in the tick, however late
    the loop ran the ones before: a busy loop makes slices late, and the tick only a little longer."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while True:
        await _until(loop, start + interval / 2)
        for connection in registry.expired(clock()):
            connection.close(CloseReason.EXPIRED)
        ping = EncodedOnce(Ping())
        connections = list(registry)
        slices = max(1, min(len(connections), round(interval / 2 / PING_PAUSE)))  # no pause for nobody
        count = 0
        for number in range(slices):
            for connection in connections[len(connections) * number // slices:len(connections) * (number + 1) // slices]:
                if connection.ws.keep_alive():
                    count += connection.send(ping.for_connection(connection))
                    connection.send(WEBSOCKET_PING)  # written with the SignalR Ping, in one system call
            await _until(loop, start + interval / 2 * (1 + (number + 1) / slices))
        del connections  # the closed ones among them are freed now, not a tick later
        sent(count)
        start = max(start + interval, loop.time() - interval / 2)  # after a stall, no burst of ticks


async def _until(loop: asyncio.AbstractEventLoop, deadline: float) -> None:
    # a late slice still leaves the loop a short pause: catching up all at once would put the
    # slices a busy spell delayed (a reconnect storm's) back to back, in the same busy spell
    await asyncio.sleep(max(CATCH_UP_PAUSE, deadline - loop.time()))
