"""The event contract between the database triggers and whoever LISTENs.

Every committed change to a vault row is published by a trigger as one NOTIFY on
:data:`CHANNEL` whose payload is a small JSON object::

    {"type": 8, "user": "<uuid>|null", "org": "<uuid>|null", "item": "<uuid>|null",
     "date": "2025-11-28T16:00:00.123000Z", "context": "<device identifier>|null"}

:func:`decode_event` turns that text into an :class:`Event`, or raises :class:`EventError`.
"""

from __future__ import annotations

import enum
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

__all__ = ["CHANNEL", "MAX_CONTEXT_ID_LENGTH", "Event", "EventError", "PushType", "decode_event"]

CHANNEL = "pgwarden_events"

#: Longer context ids are published as null (the triggers enforce it), keeping payloads small.
MAX_CONTEXT_ID_LENGTH = 255


class PushType(enum.IntEnum):
    """Bitwarden push notification types, as the clients number them."""

    SYNC_CIPHER_UPDATE = 0
    SYNC_CIPHER_CREATE = 1
    SYNC_LOGIN_DELETE = 2
    SYNC_FOLDER_DELETE = 3
    SYNC_CIPHERS = 4
    SYNC_VAULT = 5
    SYNC_ORG_KEYS = 6
    SYNC_FOLDER_CREATE = 7
    SYNC_FOLDER_UPDATE = 8
    SYNC_CIPHER_DELETE = 9
    SYNC_SETTINGS = 10
    LOG_OUT = 11
    SYNC_SEND_CREATE = 12
    SYNC_SEND_UPDATE = 13
    SYNC_SEND_DELETE = 14
    AUTH_REQUEST = 15
    AUTH_REQUEST_RESPONSE = 16
    SYNC_ORGANIZATIONS = 17
    SYNC_ORGANIZATION_STATUS_CHANGED = 18
    SYNC_ORGANIZATION_COLLECTION_SETTING_CHANGED = 19

    @property
    def names_item(self) -> bool:
        """True when the event is about one item (cipher, folder, send, auth request)."""
        return self in _ITEM_TYPES


_ITEM_TYPES = frozenset(
    {
        PushType.SYNC_CIPHER_UPDATE,
        PushType.SYNC_CIPHER_CREATE,
        PushType.SYNC_LOGIN_DELETE,
        PushType.SYNC_FOLDER_DELETE,
        PushType.SYNC_FOLDER_CREATE,
        PushType.SYNC_FOLDER_UPDATE,
        PushType.SYNC_CIPHER_DELETE,
        PushType.SYNC_SEND_CREATE,
        PushType.SYNC_SEND_UPDATE,
        PushType.SYNC_SEND_DELETE,
        PushType.AUTH_REQUEST,
        PushType.AUTH_REQUEST_RESPONSE,
    }
)

_FIELDS = frozenset({"type", "user", "org", "item", "date", "context"})


class EventError(ValueError):
    """Raised when a NOTIFY payload is not a valid event; the message says why."""

    def __init__(self, reason: str, payload: str) -> None:
        super().__init__(reason, payload)
        self.reason = reason
        self.payload = payload

    def __str__(self) -> str:
        shown = self.payload if len(self.payload) <= 200 else self.payload[:200] + "..."
        return f"invalid event ({self.reason}): {shown!r}"


@dataclass(frozen=True, slots=True)
class Event:
    """One published change. Ids are lowercase UUID strings, as the clients compare them."""

    type: PushType
    user_id: str | None
    org_id: str | None
    item_id: str | None
    date: datetime
    context_id: str | None


def decode_event(payload: str) -> Event:
    """Parse and validate one NOTIFY payload."""
    try:
        data = json.loads(payload)
    except (ValueError, TypeError):
        raise EventError("not JSON", str(payload)) from None
    if not isinstance(data, dict):
        raise EventError("not a JSON object", payload)
    if set(data) != _FIELDS:
        raise EventError(f"expected the fields {sorted(_FIELDS)}", payload)

    raw_type = data["type"]
    if type(raw_type) is not int or raw_type not in PushType._value2member_map_:
        raise EventError("unknown push type", payload)
    push_type = PushType(raw_type)

    user_id = _uuid_or_none(data["user"], "user", payload)
    org_id = _uuid_or_none(data["org"], "org", payload)
    item_id = _uuid_or_none(data["item"], "item", payload)
    if user_id is None and org_id is None:
        raise EventError("names neither a user nor an organization", payload)
    if push_type.names_item and item_id is None:
        raise EventError("item event without an item id", payload)

    context = data["context"]
    if context is not None and (not isinstance(context, str) or len(context) > MAX_CONTEXT_ID_LENGTH):
        raise EventError("bad context id", payload)

    return Event(push_type, user_id, org_id, item_id, _utc_date(data["date"], payload), context or None)


def _uuid_or_none(value: object, field: str, payload: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise EventError(f"{field} is not a string", payload)
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise EventError(f"{field} is not a UUID", payload) from None


def _utc_date(value: object, payload: str) -> datetime:
    if not isinstance(value, str):
        raise EventError("date is not a string", payload)
    try:
        date = datetime.fromisoformat(value)
    except ValueError:
        raise EventError("date is not ISO-8601", payload) from None
    if date.tzinfo is None:
        raise EventError("date has no time zone", payload)
    return date.astimezone(timezone.utc)
