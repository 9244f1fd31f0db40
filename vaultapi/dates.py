"""Dates on the wire: ISO-8601 in UTC with milliseconds and a Z, as the clients write them."""

from __future__ import annotations

from datetime import datetime, timezone

__all__ = ["iso", "epoch_ms", "parse_iso"]


def iso(date: datetime | None) -> str | None:
    if date is None:
        return None
    return date.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def epoch_ms(date: datetime) -> int:
    return int(date.timestamp() * 1000)


def parse_iso(text: str) -> datetime | None:
    """A client-sent date, or None when it is not one."""
    try:
        date = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return date if date.tzinfo else date.replace(tzinfo=timezone.utc)
