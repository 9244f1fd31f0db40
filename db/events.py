"""The event contract between the database triggers and whoever LISTENs.

Every committed change to a vault row is published as one NOTIFY on :data:`CHANNEL` whose
payload is a small JSON object::

    {"type": 8, "user": "<uuid>|null", "org": "<uuid>|null", "item": "<uuid>|null",
     "date": "2025-11-28T16:00:00.123000Z", "device": "<device identifier>|null",
     "collections": ["<uuid>", ...]|null, "moved_from": ["<uuid>", ...]|null}

``device`` is the acting client's device identifier (its ``deviceIdentifier``), which the
hub passes on as the SignalR ``ContextId``. An organization's event (``user`` null) names the
collections its hub routes it by (at most :data:`MAX_EVENT_COLLECTIONS` each): ``collections``,
those of the item (before a deletion, those it was in; for a bulk event, every collection its
items were or are in; null: every member), and ``moved_from``, those an updated item left
(null unless they changed). A personal event has both null.

:class:`PushType` is the one table of push types: what each one's payload looks like, what
raises it, which hub serves it and whether pgwarden produces it. The SQL side reads the same
table (db/routines.py renders it) and tests/db/test_contract.py fails when any copy disagrees.

:func:`decode_event` turns a payload into an :class:`Event`, or raises :class:`EventError`.
"""

from __future__ import annotations

import enum
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

__all__ = [
    "CHANNEL",
    "MAX_DEVICE_IDENTIFIER_LENGTH",
    "MAX_EVENT_COLLECTIONS",
    "Event",
    "EventError",
    "Hub",
    "Payload",
    "PushType",
    "Source",
    "Status",
    "decode_event",
]

CHANNEL = "pgwarden_events"

#: Longer device identifiers are published as null (the triggers enforce it): payloads stay small.
MAX_DEVICE_IDENTIFIER_LENGTH = 255

#: An organization's event names at most this many collections in each list (two lists of 64
#: UUIDs keep a payload under 6000 bytes, NOTIFY allows 8000); the triggers publish an item's
#: change that would name more as a bulk event to every member, naming no item.
MAX_EVENT_COLLECTIONS = 64


class Payload(enum.Enum):
    """The shape of a notification's Payload, as protocol.md section 1 lists them."""

    CIPHER = "cipher"
    FOLDER = "folder"
    SEND = "send"
    USER = "user-level"
    AUTH_REQUEST = "auth request"


class Source(enum.Enum):
    """What raises a push type, and so which table's trigger publishes it."""

    CIPHER = "cipher"
    FOLDER = "folder"
    SEND = "send"
    AUTH_REQUEST = "auth request"
    ACCOUNT = "account"
    ORGANIZATION = "organization"

    @property
    def table(self) -> str:
        """The table whose trigger publishes it: ciphers, folders and sends have their own; anything
        else is published by inserting a sync_events row (the row is the message)."""
        return {Source.CIPHER: "ciphers", Source.FOLDER: "folders", Source.SEND: "sends"}.get(self, "sync_events")


class Hub(enum.Flag):
    """Where the clients listen: the signed-in user's hub, or the anonymous (login with device) one."""

    USER = enum.auto()
    ANONYMOUS = enum.auto()


class Status(enum.Enum):
    """Whether pgwarden raises the type today."""

    PRODUCED = "produced"
    NOT_YET = "not yet produced"
    #: Billing types of the Bitwarden cloud: nothing on a self-hosted server raises them.
    NEVER = "not applicable"


_CIPHER, _FOLDER, _SEND = Source.CIPHER, Source.FOLDER, Source.SEND
_AUTH, _ACCOUNT, _ORG = Source.AUTH_REQUEST, Source.ACCOUNT, Source.ORGANIZATION


class PushType(enum.IntEnum):
    """Bitwarden push notification types, as the clients number them, and what each one means here.

    A row reads: number, payload shape (None: a shape pgwarden does not build), sources, status,
    and the hubs that serve it (the user's hub unless said otherwise).
    """

    payload: Payload | None
    sources: frozenset[Source]
    status: Status
    hubs: Hub

    #                                              no. payload               sources                        status
    SYNC_CIPHER_UPDATE                           = 0,  Payload.CIPHER,       {_CIPHER},                     Status.PRODUCED
    SYNC_CIPHER_CREATE                           = 1,  Payload.CIPHER,       {_CIPHER},                     Status.PRODUCED
    SYNC_LOGIN_DELETE                            = 2,  Payload.CIPHER,       {_CIPHER},                     Status.PRODUCED
    SYNC_FOLDER_DELETE                           = 3,  Payload.FOLDER,       {_FOLDER},                     Status.PRODUCED
    # bulk: a statement touching several items of a user, or a bulk action of the API
    SYNC_CIPHERS                                 = 4,  Payload.USER,         {_CIPHER, _ACCOUNT},           Status.PRODUCED
    # everything: an import (items inserted together), a purge, what a member reaches in an organization
    SYNC_VAULT                                   = 5,  Payload.USER,         {_CIPHER, _FOLDER, _ACCOUNT, _ORG}, Status.PRODUCED
    # a member gains or loses an organization or its key (vaultapi/models/memberships.py)
    SYNC_ORG_KEYS                                = 6,  Payload.USER,         {_ORG},                        Status.PRODUCED
    SYNC_FOLDER_CREATE                           = 7,  Payload.FOLDER,       {_FOLDER},                     Status.PRODUCED
    SYNC_FOLDER_UPDATE                           = 8,  Payload.FOLDER,       {_FOLDER},                     Status.PRODUCED
    # the established behaviour deletes with 2 (hard) or updates with 0 (soft)
    SYNC_CIPHER_DELETE                           = 9,  Payload.CIPHER,       {_CIPHER},                     Status.NOT_YET
    SYNC_SETTINGS                                = 10, Payload.USER,         {_ACCOUNT},                    Status.PRODUCED
    # a user-level event; naming an item (a devices row), a LogOut of that one device only
    LOG_OUT                                      = 11, Payload.USER,         {_ACCOUNT},                    Status.PRODUCED
    SYNC_SEND_CREATE                             = 12, Payload.SEND,         {_SEND},                       Status.PRODUCED
    SYNC_SEND_UPDATE                             = 13, Payload.SEND,         {_SEND},                       Status.PRODUCED
    SYNC_SEND_DELETE                             = 14, Payload.SEND,         {_SEND},                       Status.PRODUCED
    # a device asks to log in (vaultapi/routes/auth_requests.py)
    AUTH_REQUEST                                 = 15, Payload.AUTH_REQUEST, {_AUTH},                       Status.PRODUCED
    # the waiting device is on the anonymous hub; the user's own devices hear of it too
    AUTH_REQUEST_RESPONSE                        = (16, Payload.AUTH_REQUEST, {_AUTH},                      Status.PRODUCED,
                                                   Hub.USER | Hub.ANONYMOUS)
    # an organization's name changed (vaultapi/models/organizations.py)
    SYNC_ORGANIZATIONS                           = 17, Payload.USER,         {_ORG},                        Status.PRODUCED
    # 18-21 and 25-27 carry organization, notification, policy or premium objects: no shape yet
    SYNC_ORGANIZATION_STATUS_CHANGED             = 18, None,                 {_ORG},                        Status.NOT_YET
    SYNC_ORGANIZATION_COLLECTION_SETTING_CHANGED = 19, None,                 {_ORG},                        Status.NOT_YET
    NOTIFICATION                                 = 20, None,                 {_ACCOUNT},                    Status.NOT_YET
    NOTIFICATION_STATUS                          = 21, None,                 {_ACCOUNT},                    Status.NOT_YET
    REFRESH_SECURITY_TASKS                       = 22, Payload.USER,         {_ORG},                        Status.NOT_YET
    ORGANIZATION_BANK_ACCOUNT_VERIFIED           = 23, None,                 set(),                         Status.NEVER
    PROVIDER_BANK_ACCOUNT_VERIFIED               = 24, None,                 set(),                         Status.NEVER
    POLICY_CHANGED                               = 25, None,                 {_ORG},                        Status.NOT_YET
    AUTO_CONFIRM                                 = 26, None,                 {_ORG},                        Status.NOT_YET
    PREMIUM_STATUS_CHANGED                       = 27, None,                 {_ACCOUNT},                    Status.NOT_YET

    def __new__(cls, number: int, payload: Payload | None, sources: set[Source], status: Status,
                hubs: Hub = Hub.USER) -> PushType:
        member = int.__new__(cls, number)
        member._value_ = number
        member.payload = payload
        member.sources = frozenset(sources)
        member.status = status
        member.hubs = hubs
        return member

    @property
    def sql_name(self) -> str:
        """How the SQL names it: ``pgwarden_push_type('sync_cipher_create')``."""
        return self.name.lower()

    @property
    def names_item(self) -> bool:
        """True when the event is about one item (cipher, folder, send, auth request)."""
        return self.payload is not None and self.payload is not Payload.USER

    @property
    def deliverable(self) -> bool:
        """True when the hub can build its payload; the decoder refuses the others."""
        return self.payload is not None

    @property
    def tables(self) -> frozenset[str]:
        """The tables whose triggers may publish it."""
        return frozenset(source.table for source in self.sources)

    @property
    def by_row(self) -> bool:
        """True when a sync_events row may carry it (the CHECK constraint allows exactly these)."""
        return self.deliverable and "sync_events" in self.tables


_FIELDS = frozenset({"type", "user", "org", "item", "date", "device", "collections", "moved_from"})


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
    #: The acting client's device identifier; None when unknown (an admin's SQL session).
    device_identifier: str | None
    #: An organization's event: the collections that say who reaches it (see the module's
    #: docstring); None for a personal event, and for an organization's event every member hears.
    collections: tuple[str, ...] | None = None
    #: An organization's item update that changed its collections: the ones it was in.
    moved_from: tuple[str, ...] | None = None


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
    if not push_type.deliverable:
        raise EventError("push type without a payload shape", payload)

    user_id = _uuid_or_none(data["user"], "user", payload)
    org_id = _uuid_or_none(data["org"], "org", payload)
    item_id = _uuid_or_none(data["item"], "item", payload)
    if user_id is None and org_id is None:
        raise EventError("names neither a user nor an organization", payload)
    if push_type.names_item and item_id is None:
        raise EventError("item event without an item id", payload)

    device = data["device"]
    if device is not None and (not isinstance(device, str) or len(device) > MAX_DEVICE_IDENTIFIER_LENGTH):
        raise EventError("bad device identifier", payload)

    collections = _uuids_or_none(data["collections"], "collections", payload)
    moved_from = _uuids_or_none(data["moved_from"], "moved_from", payload)
    if user_id is not None and (collections is not None or moved_from is not None):
        raise EventError("a user's event names collections", payload)
    if user_id is None and push_type.names_item and collections is None:
        raise EventError("an organization's item event without its collections", payload)
    if moved_from is not None and push_type is not PushType.SYNC_CIPHER_UPDATE:
        raise EventError("moved_from on an event other than an item update", payload)

    return Event(push_type, user_id, org_id, item_id, _utc_date(data["date"], payload), device or None,
                 collections, moved_from)


def _uuids_or_none(value: object, field: str, payload: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > MAX_EVENT_COLLECTIONS:
        raise EventError(f"{field} is not a list of at most {MAX_EVENT_COLLECTIONS} ids", payload)
    ids = [_uuid_or_none(item, field, payload) for item in value]
    if None in ids:
        raise EventError(f"{field} holds a null", payload)
    return tuple(dict.fromkeys(ids))  # type: ignore[arg-type]


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
