"""The account's devices: listed as the clients read them, and deactivated: the refresh token
revoked, the access tokens refused at once, a LogOut to that device alone."""

from __future__ import annotations

from collections.abc import Callable

import asyncpg

from tests.support.bwclient import BitwardenClient
from tests.support.listen import EventListener
from tests.vaultapi.conftest import PASSWORD, assert_event, user_id_of


async def second_device(new_client: Callable[..., BitwardenClient], alice: BitwardenClient) -> BitwardenClient:
    phone = new_client(device_type=0)
    await phone.login(alice.email, PASSWORD)
    return phone


async def test_devices_are_listed_with_the_fields_the_clients_read(
    alice: BitwardenClient, bob: BitwardenClient, new_client: Callable[..., BitwardenClient],
) -> None:
    phone = await second_device(new_client, alice)
    listed = (await alice.get("/api/devices")).json()
    assert listed["object"] == "list"
    by_identifier = {device["identifier"]: device for device in listed["data"]}
    assert set(by_identifier) == {alice.device, phone.device}
    entry = by_identifier[phone.device]
    assert entry["type"] == 0 and entry["name"] == "linux" and entry["object"] == "device"
    assert entry["isTrusted"] is False and entry["encryptedUserKey"] is None
    assert entry["devicePendingAuthRequest"] is None and entry["creationDate"].endswith("Z")
    one = await alice.get(f"/api/devices/identifier/{phone.device}")
    assert one.status_code == 200 and one.json()["id"] == entry["id"]
    assert (await alice.get(f"/api/devices/{entry['id']}")).json()["identifier"] == phone.device
    # another user's devices are unknown alike
    assert (await bob.get(f"/api/devices/{entry['id']}")).status_code == 404
    assert (await bob.get(f"/api/devices/identifier/{phone.device}")).status_code == 404
    assert {device["identifier"] for device in (await bob.get("/api/devices")).json()["data"]} == {bob.device}


async def test_a_pending_auth_request_shows_on_its_device(
    alice: BitwardenClient, new_client: Callable[..., BitwardenClient],
) -> None:
    phone = await second_device(new_client, alice)
    _, request = await phone.ask_to_log_in(alice.email)
    assert request is not None
    entry = (await alice.get(f"/api/devices/identifier/{phone.device}")).json()
    listed = {device["identifier"]: device for device in (await alice.get("/api/devices")).json()["data"]}
    assert listed[phone.device]["devicePendingAuthRequest"]["id"] == request.id
    assert entry["identifier"] == phone.device


async def test_deactivated_device_is_signed_out_at_once(
    alice: BitwardenClient, bob: BitwardenClient, new_client: Callable[..., BitwardenClient],
    db: asyncpg.Connection, events: EventListener,
) -> None:
    phone = await second_device(new_client, alice)
    phone_id = (await alice.get(f"/api/devices/identifier/{phone.device}")).json()["id"]
    # Bob cannot deactivate it
    assert (await bob.post(f"/api/devices/{phone_id}/deactivate")).status_code == 404
    assert (await phone.get("/api/accounts/profile")).status_code == 200
    await events.nothing()

    assert (await alice.post(f"/api/devices/{phone_id}/deactivate")).status_code == 200
    # a LogOut naming that device alone, as the device that acted
    assert_event(await events.next(), 11, await user_id_of(alice), phone_id, alice.device)
    assert (await phone.get("/api/accounts/profile")).status_code == 401
    refreshed = await phone.refresh()
    assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"
    assert (await alice.get("/api/accounts/profile")).status_code == 200
    assert phone.device not in {d["identifier"] for d in (await alice.get("/api/devices")).json()["data"]}
    assert (await alice.post(f"/api/devices/{phone_id}/deactivate")).status_code == 404
    known = await phone.http.get(f"/api/devices/knowndevice/{alice.email}/{phone.device}")
    assert known.json() is False

    # logging in again brings it back
    await phone.login(alice.email, PASSWORD)
    assert (await phone.get("/api/accounts/profile")).status_code == 200
    assert (await alice.get(f"/api/devices/identifier/{phone.device}")).json()["id"] == phone_id


async def test_delete_routes_deactivate_too(alice: BitwardenClient, new_client: Callable[..., BitwardenClient]
                                            ) -> None:
    for method, suffix in (("DELETE", ""), ("POST", "/delete")):
        phone = await second_device(new_client, alice)
        phone_id = (await alice.get(f"/api/devices/identifier/{phone.device}")).json()["id"]
        assert (await alice.call(method, f"/api/devices/{phone_id}{suffix}")).status_code == 200
        assert (await phone.get("/api/accounts/profile")).status_code == 401
