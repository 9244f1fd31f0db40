"""The SignalR Ping every connection needs at least every 15 s.

Clients give up on a server after 30 s of silence, and WebSocket control-frame pings are
invisible to browser JavaScript, so this is a data frame: MessagePack ``[6]`` or JSON
``{"type":6}``, each encoded once per tick.
"""

from __future__ import annotations

import asyncio

from wshub.codec import Ping
from wshub.delivery import EncodedOnce
from wshub.registry import Registry

__all__ = ["DEFAULT_PING_INTERVAL", "keep_alive"]

DEFAULT_PING_INTERVAL = 15.0


async def keep_alive(registry: Registry, interval: float = DEFAULT_PING_INTERVAL) -> None:
    """Runs until cancelled."""
    while True:
        await asyncio.sleep(interval)
        ping = EncodedOnce(Ping())
        for connection in registry:
            connection.send(ping.for_connection(connection))
