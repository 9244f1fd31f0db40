"""Sends reach a user's other devices live: the real API and the real hub on one database, and
SignalR clients (JSON protocol) connected with the tokens the API issued.

A Send created, edited and deleted through the API is announced to the owner's devices as
SyncSendCreate (12), SyncSendUpdate (13) and SyncSendDelete (14), naming the Send, its owner
and its revision date, with the acting device's identifier as ContextId: as for items, the
device that made the change is told too and drops the message as its own, the owner's other
device applies it. Another user's device hears nothing. The housekeeping sweep's deletion is
announced without a ContextId, since no device made it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import asyncpg
import pytest

from tests.support.bwclient import BitwardenClient
from tests.vaultapi.conftest import PASSWORD, user_id_of
from tests.vaultapi.test_sends import text_send
from tests.wshub.support import HubClient, RunningHub, start_hub
from vaultapi import housekeeping
from vaultapi.database import open_pool
from vaultapi.storage.postgres import PostgresStore

SEND_CREATE, SEND_UPDATE, SEND_DELETE = 12, 13, 14


@pytest.fixture
async def hub(database_url: str) -> AsyncIterator[RunningHub]:
    running = await start_hub(database_url)
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def listen(hub: RunningHub) -> AsyncIterator[Callable[[BitwardenClient], Any]]:
    """Connects a device to the hub with its access token; closes them all at the end."""
    opened: list[HubClient] = []

    async def connect(device: BitwardenClient) -> HubClient:
        client = await HubClient.connect(hub.ws_url(access_token=device.access_token), "json")
        opened.append(client)
        return client

    yield connect
    for client in opened:
        await client.close()


def check(notification: dict[str, Any], push_type: int, send_id: str, user_id: str, context: str | None) -> datetime:
    """One Send notification naming the device that acted (None: none did); returns its revision date."""
    assert notification["Type"] == push_type, notification
    assert notification["ContextId"] == context, notification
    payload = notification["Payload"]
    assert (payload["Id"], payload["UserId"]) == (send_id, user_id), notification
    return datetime.fromisoformat(payload["RevisionDate"].replace("Z", "+00:00"))


def revision_date(send: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(send["revisionDate"].replace("Z", "+00:00"))


async def test_send_changes_reach_the_owners_devices_naming_the_acting_one(
        alice: BitwardenClient, bob: BitwardenClient, new_client: Callable[..., BitwardenClient],
        listen: Callable[[BitwardenClient], Any]) -> None:
    me = await user_id_of(alice)
    phone = new_client(device_type=0)  # the same user's other device
    await phone.login("alice@example.com", PASSWORD)
    acting, other, stranger = await listen(alice), await listen(phone), await listen(bob)

    created = await alice.post("/api/sends", text_send(alice))
    assert created.status_code == 200, created.text
    send_id = created.json()["id"]
    edited = await alice.put(f"/api/sends/{send_id}", text_send(alice, "the new secret"))
    assert edited.status_code == 200, edited.text
    deleted = await alice.delete(f"/api/sends/{send_id}")
    assert deleted.status_code == 200, deleted.text

    for device in (other, acting):
        stamped = check(await device.notification(), SEND_CREATE, send_id, me, alice.device)
        assert stamped == revision_date(created.json())
        stamped = check(await device.notification(), SEND_UPDATE, send_id, me, alice.device)
        assert stamped == revision_date(edited.json()) > revision_date(created.json())
        stamped = check(await device.notification(), SEND_DELETE, send_id, me, alice.device)
        assert stamped >= revision_date(edited.json())
        await device.nothing()
    await stranger.nothing()


async def test_the_sweeps_deletion_reaches_the_owners_devices(
        alice: BitwardenClient, bob: BitwardenClient, database_url: str, db: asyncpg.Connection,
        listen: Callable[[BitwardenClient], Any]) -> None:
    me = await user_id_of(alice)
    send = (await alice.post("/api/sends", text_send(alice))).json()
    device, stranger = await listen(alice), await listen(bob)
    await db.execute("UPDATE sends SET deletion_date = now() WHERE id = $1", uuid.UUID(send["id"]))
    check(await device.notification(), SEND_UPDATE, send["id"], me, None)

    pool = await open_pool(database_url)
    try:
        swept = await housekeeping.sweep(pool, PostgresStore(pool))
    finally:
        await pool.close()
    assert swept is not None and swept.sends == 1
    check(await device.notification(), SEND_DELETE, send["id"], me, None)
    assert (await alice.get(f"/api/sends/{send['id']}")).status_code == 404
    await stranger.nothing()
