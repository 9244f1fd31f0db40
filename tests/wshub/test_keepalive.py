"""The keepalive tick without sockets: a ping to every connection, and a goodbye to those whose
token (or, on the anonymous hub, whose time) ran out."""

from __future__ import annotations

import asyncio
import uuid

from tests.wshub.memory import MemorySocket, make_connection, serve
from wshub.keepalive import keep_alive
from wshub.registry import Registry
from wshub.session import CloseReason, State

ALICE = str(uuid.uuid4())


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_each_tick_pings_everyone_and_closes_who_expired() -> None:
    registry = Registry(max_connections=10, max_anonymous=10, max_per_user=10, max_per_ip=10)
    clock = _Clock(1000.0)
    sockets = [MemorySocket(), MemorySocket(), MemorySocket()]
    expiring = make_connection(ALICE, ws=sockets[0], expires_at=1005.0)
    lasting = make_connection(ALICE, ws=sockets[1], expires_at=5000.0)
    waiting = make_connection(auth_request_id=str(uuid.uuid4()), ws=sockets[2], expires_at=1003.0)
    served = [asyncio.create_task(serve(c)) for c in (expiring, lasting, waiting)]
    for connection in (expiring, lasting, waiting):
        registry.add(connection)
    ticking = asyncio.create_task(keep_alive(registry, 0.01, clock=clock))
    try:
        await asyncio.sleep(0.05)
        assert all(c.session.state is State.OPEN for c in (expiring, lasting, waiting))
        clock.now = 1006.0
        await asyncio.wait_for(asyncio.gather(served[0], served[2]), 1)
    finally:
        ticking.cancel()
    for connection, ws in ((expiring, sockets[0]), (waiting, sockets[2])):
        assert connection.session.closing.reason is CloseReason.EXPIRED
        assert ws.messages()[-1] == [7, None, True]  # a fresh token, or a new auth request, gets back in
        assert ws.closed == (1008, "session expired")
    assert lasting.session.state is State.OPEN
    assert [6] in sockets[1].messages()
    assert sockets[1].ticks > 0  # each tick also asked its socket for a WebSocket Ping
    lasting.lost()
    await served[1]


async def test_a_tick_pings_a_slice_at_a_time_and_events_get_turns_between() -> None:
    """Pinging every connection at once held the loop for a third of a second at 10,000: a tick
    pings a slice, gives the loop back, and goes on, so something else runs between the slices."""
    registry = Registry(max_connections=100, max_anonymous=10, max_per_user=100, max_per_ip=100)
    sockets = [MemorySocket() for _ in range(40)]
    connections = [make_connection(ALICE, ws=ws) for ws in sockets]
    served = [asyncio.create_task(serve(c)) for c in connections]
    for connection in connections:
        registry.add(connection)
    seen: list[int] = []  # connections pinged so far, each time another task got a turn
    ticking = asyncio.create_task(keep_alive(registry, 0.4))  # 10 slices of 4
    try:
        while not seen or seen[-1] < len(sockets):
            seen.append(sum(ws.ticks > 0 for ws in sockets))
            await asyncio.sleep(0)
    finally:
        ticking.cancel()
    assert len({count for count in seen if 0 < count < len(sockets)}) >= 5
    assert all(later >= earlier for earlier, later in zip(seen, seen[1:]))
    for connection in connections:
        connection.lost()
    await asyncio.gather(*served)
