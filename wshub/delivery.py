"""Routing one event to the connections that should see it.

A user's event goes to the user's connections; an organization's, to the connections of the
members who reach its item (wshub/memberships.py), each group of them with its own payload.
Each event is decoded once, and each message encoded and framed at most once per hub protocol and
payload, however many connections receive it: every recipient of a payload gets the same bytes.
Sending writes them to each socket's transport (see connection.py), so delivery never waits on a
client.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from db.events import Event, Hub, PushType
from wshub.codec import Invocation, Message
from wshub.connection import Connection
from wshub.framing import frame
from wshub.memberships import SIGNALS, Memberships
from wshub.metrics import HubMetrics
from wshub.notifications import auth_request_response, organization_message, receive_message
from wshub.registry import Registry
from wshub.session import CloseReason

__all__ = ["Delivery", "EncodedOnce"]

log = logging.getLogger(__name__)


class EncodedOnce:
    """A message and its WebSocket frames, encoded and framed on first use per protocol."""

    def __init__(self, message: Message) -> None:
        self.message = message
        self._frames: dict[str, bytes] = {}

    def for_connection(self, connection: Connection) -> bytes:
        wire = self._frames.get(connection.protocol.name)
        if wire is None:
            wire = self._frames[connection.protocol.name] = frame(connection.protocol.encode(self.message))
        return wire


class Delivery:
    def __init__(self, registry: Registry, metrics: HubMetrics, memberships: Memberships | None = None) -> None:
        """Without memberships, organization events have no recipients."""
        self.registry = registry
        self.metrics = metrics
        self.memberships = memberships

    def deliver(self, event: Event) -> int:
        """Send the event to every recipient connection; returns how many took it."""
        self.metrics.events_in.inc()
        queued = 0
        if event.user_id is not None and Hub.USER in event.type.hubs:
            if event.type in SIGNALS and self.memberships is not None:
                # before anything else: no organization event reaches the user on the old grants
                self.memberships.changed(event.user_id)
            queued += self._to_user(event.user_id, event)
        elif event.user_id is None and self.memberships is not None:
            queued += self._to_members(event)
        if Hub.ANONYMOUS in event.type.hubs and event.item_id is not None:
            queued += self._send(self.registry.waiting_for(event.item_id), auth_request_response(event))
        if queued:
            self.metrics.messages_out.inc(queued)
            self.metrics.event_latency.observe(max(0.0, time.time() - event.date.timestamp()))
        return queued

    def replay(self, user_id: str, event: Event) -> None:
        """An event the user missed while its grants loaded (Memberships calls it), to that user alone."""
        if event.user_id is None:
            self._to_members(event, only=user_id)
        else:
            self._to_user(user_id, event)

    def _to_user(self, user_id: str, event: Event) -> int:
        recipients = self.registry.of_user(user_id)
        if event.type == PushType.LOG_OUT and event.item_id is not None:
            # one device's LogOut (it was deactivated): the item is its devices row
            recipients = frozenset(c for c in recipients if c.device_id == event.item_id)
        queued = self._send(recipients, receive_message(event))
        if event.type == PushType.LOG_OUT:
            self._log_out(recipients)
        return queued

    def _to_members(self, event: Event, only: str | None = None) -> int:
        assert self.memberships is not None
        queued = 0
        for group in self.memberships.route(event, only):
            connections = self.registry.of_users(group.users)
            queued += self._send(connections, organization_message(event, group.type, group.collection_ids))
        return queued

    @staticmethod
    def _send(connections: Iterable[Connection], message: Invocation) -> int:
        encoded = EncodedOnce(message)
        return sum(connection.send(encoded.for_connection(connection)) for connection in connections)

    @staticmethod
    def _log_out(connections: frozenset[Connection]) -> None:
        # Every session goes, the acting device's too: a LogOut follows a security stamp change,
        # so every token these sessions were opened with is refused from now on, and a copy of the
        # acting device's token must not keep one open. The acting client logs out after a
        # password change anyway and connects again with the token of its next login.
        for connection in connections:
            connection.close(CloseReason.LOGGED_OUT)
