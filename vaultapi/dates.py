"""Dates on the wire: ISO-8601 in UTC with milliseconds and a Z, as the clients write them."""

from __future__ import annotations

from datetime import datetime, timezone

__all__ = ["iso", "epoch_ms", "parse_iso"]


def iso(date: datetime | None) -> str | None:
    if date is None:
        return None
    if date.tzinfo is not timezone.utc:  # what asyncpg reads is in UTC already: a sync formats thousands
        date = date.astimezone(timezone.utc)
    return (f"{date.year:04d}-{date.month:02d}-{date.day:02d}T{date.hour:02d}:{date.minute:02d}:"
            f"{date.second:02d}.{date.microsecond // 1000:03d}Z")


def epoch_ms(date: datetime) -> int:
    return int(date.timestamp() * 1000)


def parse_iso(text: str) -> datetime | None:
    """A client-sent date, or None when it is not one."""
    try:
        date = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return date if date.tzinfo else date.replace(tzinfo=timezone.utc)
