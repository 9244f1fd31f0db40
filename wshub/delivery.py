"""Routing one event to the connections that should see it.

Each event is decoded once, and each message encoded and framed at most once per hub protocol,
however many connections receive it: every recipient gets the same bytes. Sending writes them to
each socket's transport (see connection.py), so delivery never waits on a client.
"""

from __future__ import annotations

import logging
import time

from db.events import Event, Hub, PushType
from wshub.codec import Invocation, Message
from wshub.connection import Connection
from wshub.framing import frame
from wshub.metrics import HubMetrics
from wshub.notifications import auth_request_response, receive_message
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
    def __init__(self, registry: Registry, metrics: HubMetrics) -> None:
        self.registry = registry
        self.metrics = metrics

    def deliver(self, event: Event) -> int:
        """Send the event to every recipient connection; returns how many took it."""
        self.metrics.events_in.inc()
        queued = 0
        if event.user_id is not None and Hub.USER in event.type.hubs:
            recipients = self.registry.of_user(event.user_id)
            if event.type == PushType.LOG_OUT and event.item_id is not None:
                # one device's LogOut (it was deactivated): the item is its devices row
                recipients = frozenset(c for c in recipients if c.device_id == event.item_id)
            queued += self._send(recipients, receive_message(event))
            if event.type == PushType.LOG_OUT:
                self._log_out(recipients)
        elif event.user_id is None:
            # Organization-wide events need the membership tables, which do not exist yet.
            log.debug("no recipients known for organization event %s", event)
        if Hub.ANONYMOUS in event.type.hubs and event.item_id is not None:
            queued += self._send(self.registry.waiting_for(event.item_id), auth_request_response(event))
        if queued:
            self.metrics.messages_out.inc(queued)
            self.metrics.event_latency.observe(max(0.0, time.time() - event.date.timestamp()))
        return queued

    @staticmethod
    def _send(connections: frozenset[Connection], message: Invocation) -> int:
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
