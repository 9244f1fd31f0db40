"""Who is connected: user id -> live connections, and auth request id -> waiting devices.

Sets keep add and remove O(1); empty entries are removed so nothing leaks after disconnects.
Caps per user and per client address are checked both before the upgrade (a clear HTTP 429)
and when a connection is added (the authoritative check, after any race).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from wshub.connection import Connection

__all__ = ["Registry"]


class Registry:
    def __init__(self, max_per_user: int, max_per_ip: int) -> None:
        self.max_per_user = max_per_user
        self.max_per_ip = max_per_ip
        self._users: dict[str, set[Connection]] = {}
        self._auth_requests: dict[str, set[Connection]] = {}
        self._per_ip: Counter[str] = Counter()
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Connection]:
        for group in (self._users, self._auth_requests):
            for connections in list(group.values()):
                yield from list(connections)

    def refusal(self, ip: str, user_id: str | None = None) -> str | None:
        """Why one more connection from this address (and user) would be refused, or None."""
        if self._per_ip[ip] >= self.max_per_ip:
            return f"more than {self.max_per_ip} connections from {ip}"
        if user_id is not None and len(self._users.get(user_id, ())) >= self.max_per_user:
            return f"more than {self.max_per_user} connections for one user"
        return None

    def add(self, connection: Connection) -> str | None:
        """Register the connection, or return why not."""
        reason = self.refusal(connection.ip, connection.user_id)
        if reason is not None:
            return reason
        group, key = self._group_of(connection)
        group.setdefault(key, set()).add(connection)
        self._per_ip[connection.ip] += 1
        self._count += 1
        return None

    def remove(self, connection: Connection) -> None:
        group, key = self._group_of(connection)
        connections = group.get(key)
        if connections is None or connection not in connections:
            return
        connections.discard(connection)
        if not connections:
            del group[key]
        self._per_ip[connection.ip] -= 1
        if not self._per_ip[connection.ip]:
            del self._per_ip[connection.ip]
        self._count -= 1

    def of_user(self, user_id: str) -> frozenset[Connection]:
        return frozenset(self._users.get(user_id, ()))

    def waiting_for(self, auth_request_id: str) -> frozenset[Connection]:
        return frozenset(self._auth_requests.get(auth_request_id, ()))

    def user_ids(self) -> list[str]:
        return list(self._users)

    def _group_of(self, connection: Connection) -> tuple[dict[str, set[Connection]], str]:
        if connection.user_id is not None:
            return self._users, connection.user_id
        assert connection.auth_request_id is not None
        return self._auth_requests, connection.auth_request_id
