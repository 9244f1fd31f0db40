"""Who is connected: user id -> live connections, auth request id -> waiting devices, the slots
that count toward the caps, and when each connection expires.

A slot is taken at admission, before the WebSocket upgrade, and given back when the request ends
in any way: so a socket counts toward every cap from its first byte, handshake or not, and a
refusal is a plain HTTP answer. The caps: all connections of this process, the anonymous ones
among them (a smaller share: anyone can open one), per user, per client address; the last two are
counted by a Tally (tally.py), which every worker process of the hub shares.

Expiry is a wheel of one-second buckets, swept by the keepalive tick: no timer per connection,
and a connection is closed within a tick of its expiry, never before it.

Sets keep add and remove O(1); empty entries are removed so nothing leaks after disconnects.
A user's first connection and the end of its last are told to ``on_user_arrived`` and
``on_user_left`` (wshub/memberships.py holds the organization grants of exactly these users).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from wshub.connection import Connection
from wshub.tally import LocalTally, Tally

__all__ = ["LimitReached", "Registry", "Slot"]


class LimitReached(Exception):
    """Raised when one more connection would pass a cap; ``hub_full`` when it is a cap of the whole
    hub (no client did anything wrong: 503), not one of an address or a user (429)."""

    def __init__(self, reason: str, *, hub_full: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.hub_full = hub_full

    def __str__(self) -> str:
        return self.reason


@dataclass(eq=False, slots=True)
class Slot:
    """One connection's place, held from admission until its request ends."""

    ip: str
    user_id: str | None
    released: bool = field(default=False, init=False)

    @property
    def anonymous(self) -> bool:
        return self.user_id is None


class Registry:
    def __init__(self, *, max_connections: int, max_anonymous: int, max_per_user: int, max_per_ip: int,
                 tally: Tally | None = None,
                 on_user_arrived: Callable[[str], object] = lambda user_id: None,
                 on_user_left: Callable[[str], object] = lambda user_id: None) -> None:
        self.on_user_arrived = on_user_arrived
        self.on_user_left = on_user_left
        self.max_connections = max_connections
        self.max_anonymous = max_anonymous
        self.max_per_user = max_per_user
        self.max_per_ip = max_per_ip
        self._users: dict[str, set[Connection]] = {}
        self._auth_requests: dict[str, set[Connection]] = {}
        self._count = 0
        #: The most connections held at once since the start: the memory they took stays with the
        #: process (Python's allocator keeps its arenas) for the next ones.
        self.peak = 0
        # slots, by what they count toward
        self._slots = 0
        self._anonymous_slots = 0
        self._tally = tally or LocalTally()
        # the expiry wheel: second -> connections expiring in it, and those seconds in order
        self._expiring: dict[int, set[Connection]] = {}
        self._seconds: list[int] = []
        #: Set when the hub stops: no new connection is admitted while the others are told goodbye.
        self.draining = False

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Connection]:
        for group in (self._users, self._auth_requests):
            for connections in list(group.values()):
                yield from list(connections)

    @property
    def slots(self) -> int:
        """Places held: connections, and requests admitted that are not (yet) one."""
        return self._slots

    # -- slots ---------------------------------------------------------------------------------

    def reserve(self, ip: str, user_id: str | None = None) -> Slot:
        """Take a place for one more connection from this address (for this user; none: the
        anonymous hub), or raise LimitReached."""
        if self._slots >= self.max_connections:
            raise LimitReached(f"the hub is at its limit of {self.max_connections} connections", hub_full=True)
        if user_id is None and self._anonymous_slots >= self.max_anonymous:
            raise LimitReached(f"the anonymous hub is at its limit of {self.max_anonymous} connections",
                               hub_full=True)
        passed = self._tally.take(ip, user_id, self.max_per_ip, self.max_per_user)
        if passed == "ip":
            raise LimitReached(f"more than {self.max_per_ip} connections from {ip}")
        if passed == "user":
            raise LimitReached(f"more than {self.max_per_user} connections for one user")
        slot = Slot(ip, user_id)
        self._slots += 1
        if user_id is None:
            self._anonymous_slots += 1
        return slot

    def release(self, slot: Slot) -> None:
        """Give the place back; a second release changes nothing."""
        if slot.released:
            return
        slot.released = True
        self._slots -= 1
        self._tally.give_back(slot.ip, slot.user_id)
        if slot.user_id is None:
            self._anonymous_slots -= 1

    # -- connections ----------------------------------------------------------------------------

    def add(self, connection: Connection) -> None:
        """Register a connection past its handshake, so events and the expiry sweep find it."""
        group, key = self._group_of(connection)
        connections = group.get(key)
        if connections is None:
            connections = group[key] = set()
            if group is self._users:
                self.on_user_arrived(key)
        connections.add(connection)
        self._count += 1
        self.peak = max(self.peak, self._count)
        if connection.expires_at is not None:
            second = math.ceil(connection.expires_at)
            bucket = self._expiring.get(second)
            if bucket is None:
                bucket = self._expiring[second] = set()
                heapq.heappush(self._seconds, second)
            bucket.add(connection)

    def remove(self, connection: Connection) -> None:
        group, key = self._group_of(connection)
        connections = group.get(key)
        if connections is None or connection not in connections:
            return
        connections.discard(connection)
        if not connections:
            del group[key]
            if group is self._users:
                self.on_user_left(key)
        self._count -= 1
        if connection.expires_at is not None:
            # the emptied bucket stays until its second is swept: at most one per second ahead
            self._expiring.get(math.ceil(connection.expires_at), set()).discard(connection)

    def expired(self, now: float) -> list[Connection]:
        """Connections whose expiry is at or before ``now``, each returned once."""
        due: list[Connection] = []
        while self._seconds and self._seconds[0] <= now:
            due += self._expiring.pop(heapq.heappop(self._seconds), ())
        return due

    def of_user(self, user_id: str) -> frozenset[Connection]:
        return frozenset(self._users.get(user_id, ()))

    def of_users(self, user_ids: Iterable[str]) -> list[Connection]:
        """Every connection of these users, in one list (no copy of each user's set)."""
        users = self._users
        return [connection for user_id in user_ids for connection in users.get(user_id, ())]

    def waiting_for(self, auth_request_id: str) -> frozenset[Connection]:
        return frozenset(self._auth_requests.get(auth_request_id, ()))

    def user_ids(self) -> list[str]:
        return list(self._users)

    def _group_of(self, connection: Connection) -> tuple[dict[str, set[Connection]], str]:
        if connection.user_id is not None:
            return self._users, connection.user_id
        assert connection.auth_request_id is not None
        return self._auth_requests, connection.auth_request_id

