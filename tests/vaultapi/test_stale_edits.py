"""The stale-edit check: an edit made on another copy than the stored one is refused.

As the Bitwarden server does it: lastKnownRevisionDate must be a date, and may be at most a
second away from the stored revision date, before or after it.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from tests.support.bwclient import BitwardenClient
from tests.support.vaultstate import vault_bytes


def assert_refused(reply: Any, field: str) -> None:
    assert reply.status_code == 400, (field, reply.status_code, reply.text[:300])
    body = reply.json()
    assert body["object"] == "error" and field in (body["validationErrors"] or {}), (field, body)


async def _item(client: BitwardenClient, events) -> dict[str, Any]:
    reply = await client.post("/api/ciphers", client.login_item("A"))
    await events.next()
    return reply.json()


def _shifted(iso_date: str, seconds: float) -> str:
    date = datetime.fromisoformat(iso_date.replace("Z", "+00:00")) + timedelta(seconds=seconds)
    return date.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


async def test_unparseable_last_known_revision_date_is_400(alice: BitwardenClient, events) -> None:
    item = await _item(alice, events)
    before = await vault_bytes(alice)
    for bad in ("yesterday", "2020-13-45T00:00:00Z", "", "2025-01-01T00:00:00ZZ", 1735689600000, ["x"]):
        edit = {**alice.login_item("B"), "lastKnownRevisionDate": bad}
        assert_refused(await alice.put(f"/api/ciphers/{item['id']}", edit), "lastKnownRevisionDate")
        assert_refused(await alice.post("/api/ciphers", edit), "lastKnownRevisionDate")
    assert await vault_bytes(alice) == before
    await events.nothing()


async def test_last_known_revision_date_in_the_future_is_stale(alice: BitwardenClient, events) -> None:
    item = await _item(alice, events)
    for seconds in (3600, 2):
        edit = {**alice.login_item("B"), "lastKnownRevisionDate": _shifted(item["revisionDate"], seconds)}
        reply = await alice.put(f"/api/ciphers/{item['id']}", edit)
        assert reply.status_code == 400 and "out of date" in reply.json()["message"], seconds
    await events.nothing()


async def test_last_known_revision_date_within_a_second_is_current(alice: BitwardenClient, events) -> None:
    item = await _item(alice, events)
    for seconds in (0, 0.9, -0.9):
        edit = {**alice.login_item("B"), "lastKnownRevisionDate": _shifted(item["revisionDate"], seconds)}
        reply = await alice.put(f"/api/ciphers/{item['id']}", edit)
        assert reply.status_code == 200, (seconds, reply.text)
        await events.next()
        item = reply.json()
    # a client that sends none is not checked
    assert (await alice.put(f"/api/ciphers/{item['id']}", alice.login_item("C"))).status_code == 200
