"""The hub's Prometheus metrics, kept in a registry of their own per app, and who may read them."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from core.access import bearer_token

if TYPE_CHECKING:
    from wshub.session import CloseReason

__all__ = ["CONTENT_TYPE", "HubMetrics", "scrape_allowed"]

CONTENT_TYPE = CONTENT_TYPE_LATEST

#: Seconds from the event's date in PostgreSQL to its frames being queued: milliseconds matter.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class HubMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.connections = Gauge(
            "pgwarden_hub_connections", "Open connections past their handshake.", ["hub"],
            registry=self.registry)
        self.events_in = Counter(
            "pgwarden_hub_events", "Events received on the LISTEN connection.", registry=self.registry)
        self.messages_out = Counter(
            "pgwarden_hub_messages_sent", "SignalR messages written to client sockets (notifications and pings).", registry=self.registry)
        self.dropped = Counter(
            "pgwarden_hub_dropped_connections", "Connections the hub closed, by reason.", ["reason"],
            registry=self.registry)
        self.refused = Counter(
            "pgwarden_hub_refused_connections", "Connection attempts refused, by reason.", ["reason"],
            registry=self.registry)
        self.listen_reconnects = Counter(
            "pgwarden_hub_listen_reconnects", "Times the LISTEN connection was re-established.",
            registry=self.registry)
        self.event_latency = Histogram(
            "pgwarden_hub_event_latency_seconds", "From an event's date in PostgreSQL to delivery.",
            buckets=_LATENCY_BUCKETS, registry=self.registry)

    def session_ended(self, reason: CloseReason) -> None:
        """Count a session's end: never served is a refusal, closed by the hub a drop."""
        if reason.refused:
            self.refused.labels(reason.label).inc()
        elif not reason.by_client:
            self.dropped.labels(reason.label).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


def scrape_allowed(headers: Mapping[str, str], token: str) -> bool:
    """Whether the request carries METRICS_TOKEN as its bearer token (header only: a URL is logged).

    Compared in constant time, so the answer's timing does not tell how much of a guess was right.
    """
    given = bearer_token({}, headers)
    return given is not None and hmac.compare_digest(given.encode(), token.encode())
