"""A LISTEN connection on the event channel, for asserting what the triggers publish."""

from __future__ import annotations

import asyncio

import asyncpg

from db.events import CHANNEL, Event, decode_event


class EventListener:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.queue: asyncio.Queue[Event] = asyncio.Queue()

    @classmethod
    async def connect(cls, url: str) -> EventListener:
        listener = cls(await asyncpg.connect(url))
        await listener.conn.add_listener(CHANNEL, listener._received)
        return listener

    def _received(self, conn: object, pid: int, channel: str, payload: str) -> None:
        self.queue.put_nowait(decode_event(payload))

    async def next(self, timeout: float = 5.0) -> Event:
        return await asyncio.wait_for(self.queue.get(), timeout)

    async def nothing(self, within: float = 0.3) -> None:
        """Assert that no event arrives within a short wait."""
        try:
            event = await asyncio.wait_for(self.queue.get(), within)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected event: {event}")

    async def exactly(self, count: int, timeout: float = 5.0) -> list[Event]:
        """The next count events, then assert nothing more follows."""
        received = [await self.next(timeout) for _ in range(count)]
        await self.nothing()
        return received

    async def close(self) -> None:
        await self.conn.close()
