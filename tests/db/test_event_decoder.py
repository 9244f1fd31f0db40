"""The event contract: what the triggers publish decodes, anything else is refused clearly."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from db.events import Event, EventError, PushType, decode_event

USER = "8e6d2f1a-3b4c-4d5e-8f6a-7b8c9d0e1f2a"
ITEM = "0b7c1c3e-2f4a-4b8e-9d3f-6a5e4c3b2a10"
ORG = "5a0f8c2e-7b1d-4e3a-9c6f-2d8e4b1a7c93"
COLLECTION = "c2b1e8f4-3a6d-4f9e-8b7c-1d2e3f4a5b6c"


def payload(**changes: object) -> str:
    fields = {
        "type": 8,
        "user": USER,
        "org": None,
        "item": ITEM,
        "date": "2025-11-28T16:00:00.123000Z",
        "device": "4f1b2a9e-5d2c-4e8a-9a59-0c6f3b7f9d11",
        "collections": None,
        "moved_from": None,
    }
    fields.update(changes)
    return json.dumps(fields)


def test_decode_folder_update_gives_typed_event() -> None:
    event = decode_event(payload())
    assert event == Event(
        type=PushType.SYNC_FOLDER_UPDATE,
        user_id=USER,
        org_id=None,
        item_id=ITEM,
        date=datetime(2025, 11, 28, 16, 0, 0, 123000, tzinfo=timezone.utc),
        device_identifier="4f1b2a9e-5d2c-4e8a-9a59-0c6f3b7f9d11",
    )


def test_decode_normalizes_uuids_to_lowercase() -> None:
    assert decode_event(payload(user=USER.upper())).user_id == USER


def test_decode_organization_item_event_with_its_collections() -> None:
    other = "d3c2f9a5-4b7e-4a0f-9c8d-2e3f4a5b6c7d"
    event = decode_event(payload(type=0, user=None, org=ORG.upper(), collections=[COLLECTION.upper(), COLLECTION],
                                 moved_from=[other]))
    assert (event.org_id, event.collections, event.moved_from) == (ORG, (COLLECTION,), (other,))


def test_decode_organization_bulk_event_for_every_member() -> None:
    event = decode_event(payload(type=4, user=None, org=ORG, item=None))
    assert (event.type, event.org_id, event.collections) == (PushType.SYNC_CIPHERS, ORG, None)


def test_decode_user_level_event_without_item() -> None:
    event = decode_event(payload(type=5, item=None, device=None))
    assert (event.type, event.item_id, event.device_identifier) == (PushType.SYNC_VAULT, None, None)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        (json.dumps({"type": 8}), "expected the fields"),
        (payload(extra=1), "expected the fields"),
        (payload(type=99), "unknown push type"),
        (payload(type="8"), "unknown push type"),
        (payload(type=True), "unknown push type"),
        (payload(user="nobody"), "user is not a UUID"),
        (payload(user=7), "user is not a string"),
        (payload(user=None, org=None), "names neither a user nor an organization"),
        (payload(item=None), "item event without an item id"),
        (payload(date="yesterday"), "date is not ISO-8601"),
        (payload(date="2025-11-28T16:00:00"), "date has no time zone"),
        (payload(date=12), "date is not a string"),
        (payload(device=["x"]), "bad device identifier"),
        (payload(device="x" * 256), "bad device identifier"),
        (payload(type=18, item=None), "push type without a payload shape"),
        (payload(collections=[COLLECTION]), "a user's event names collections"),
        (payload(type=0, user=None, org=ORG), "an organization's item event without its collections"),
        (payload(type=1, user=None, org=ORG, collections=[], moved_from=[]), "moved_from on an event"),
        (payload(type=0, user=None, org=ORG, collections=COLLECTION), "collections is not a list"),
        (payload(type=0, user=None, org=ORG, collections=[COLLECTION] * 65), "collections is not a list"),
        (payload(type=0, user=None, org=ORG, collections=[None]), "collections holds a null"),
        (payload(type=0, user=None, org=ORG, collections=["x"]), "collections is not a UUID"),
    ],
)
def test_decode_rejects_malformed_payload_with_reason(text: str, reason: str) -> None:
    with pytest.raises(EventError) as caught:
        decode_event(text)
    assert caught.value.reason.startswith(reason)
    assert reason in str(caught.value)
