"""Login with device over the REST API: a device that has logged in before asks, a signed-in
device approves or denies once, the asking device reads the answer with its access code, logs in
with it once and unlocks; every wrong, reused, late or foreign step is a 4xx that changes nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg

from tests.support.bwclient import BitwardenClient, LoginRequest
from tests.support.listen import EventListener
from tests.vaultapi.conftest import PASSWORD, assert_event, user_id_of

EMAIL = "alice@example.com"


async def waiting_device(new_client: Callable[..., BitwardenClient], alice: BitwardenClient) -> BitwardenClient:
    """Another device of Alice's that logged in once (so the account knows it), now signed out."""
    device = new_client()
    await device.login(EMAIL, PASSWORD)
    device.tokens, device.user_key = {}, None
    return device


async def asked(device: BitwardenClient) -> LoginRequest:
    response, request = await device.ask_to_log_in(EMAIL)
    assert response.status_code == 200, response.text
    assert request is not None
    return request


async def row(db: asyncpg.Connection, request: LoginRequest) -> asyncpg.Record:
    return await db.fetchrow("SELECT * FROM auth_requests WHERE id = $1", request.id)


async def test_approved_request_logs_the_waiting_device_in_and_unlocks_it(
    alice: BitwardenClient, new_client: Callable[..., BitwardenClient], events: EventListener,
) -> None:
    created = await alice.post("/api/ciphers", json=alice.login_item("Mail", password="hunter2"))
    assert created.status_code == 200
    device = await waiting_device(new_client, alice)
    await events.next()  # the item's event
    request = await asked(device)
    alice_id = await user_id_of(alice)
    # every signed-in device hears of it, as the asking device's event
    assert_event(await events.next(), 15, alice_id, request.id, device.device)
    assert request.reply["requestDeviceTypeValue"] == device.device_type
    assert request.reply["requestApproved"] is False and request.reply["key"] is None

    # the approving device sees it pending, with the asking device's row, and answers
    pending = (await alice.get("/api/auth-requests/pending")).json()["data"]
    assert [entry["id"] for entry in pending] == [request.id]
    assert pending[0]["requestDeviceIdentifier"] == device.device and pending[0]["requestDeviceId"]
    answered = await alice.answer(request.id)
    assert answered.status_code == 200, answered.text
    assert answered.json()["requestApproved"] is True and answered.json()["responseDate"]
    assert_event(await events.next(), 16, alice_id, request.id, alice.device)
    assert (await alice.get("/api/auth-requests/pending")).json()["data"] == []

    # the waiting device logs in with its access code and decrypts the item with the key it got
    login = await device.log_in_with_request(EMAIL, request)
    assert login.status_code == 200, login.text
    items = (await device.get("/api/ciphers")).json()["data"]
    assert [device.decrypt(item["login"]["password"]) for item in items] == ["hunter2"]

    # the request is spent: the same code logs in no more
    again = await device.request_token_with(EMAIL, request)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


async def test_denied_request_is_answered_once_and_never_logs_in(
    alice: BitwardenClient, new_client: Callable[..., BitwardenClient], db: asyncpg.Connection,
    events: EventListener,
) -> None:
    device = await waiting_device(new_client, alice)
    request = await asked(device)
    await events.next()
    denied = await alice.answer(request.id, approve=False)
    assert denied.status_code == 200 and denied.json()["requestApproved"] is False
    # a denial is not announced: a stranger's device learns nothing from the hub
    await events.nothing()
    before = await row(db, request)
    second = await alice.answer(request.id)
    assert second.status_code == 400
    assert await row(db, request) == before
    answer = await device.read_answer(request)
    assert answer.status_code == 200 and answer.json()["requestApproved"] is False and answer.json()["key"] is None
    assert (await device.request_token_with(EMAIL, request)).status_code == 400


async def test_second_approval_changes_nothing(
    alice: BitwardenClient, new_client: Callable[..., BitwardenClient], db: asyncpg.Connection,
) -> None:
    device = await waiting_device(new_client, alice)
    request = await asked(device)
    assert (await alice.answer(request.id)).status_code == 200
    before = await row(db, request)
    assert (await alice.answer(request.id, approve=False)).status_code == 400
    assert (await alice.answer(request.id)).status_code == 400
    assert await row(db, request) == before


async def test_wrong_code_unknown_id_and_late_requests_are_refused(
    alice: BitwardenClient, new_client: Callable[..., BitwardenClient], db: asyncpg.Connection,
) -> None:
    device = await waiting_device(new_client, alice)
    request = await asked(device)
    wrong = LoginRequest(request.id, "x" * 25, request.private_key, {})
    assert (await device.read_answer(wrong)).status_code == 404
    unknown = LoginRequest("00000000-0000-0000-0000-000000000001", request.access_code, request.private_key, {})
    assert (await device.read_answer(unknown)).status_code == 404
    assert (await alice.answer(unknown.id)).status_code == 404
    assert (await alice.answer(request.id)).status_code == 200
    # a wrong code logs in no more than a wrong password, and spends nothing; nor does the right
    # code from another device, or for another request
    assert (await device.request_token_with(EMAIL, wrong)).status_code == 400
    other = new_client()
    assert (await other.request_token_with(EMAIL, request)).status_code == 400
    assert (await device.request_token_with(EMAIL, unknown)).status_code == 400
    assert (await row(db, request))["authentication_date"] is None

    # 15 minutes later the answer can no longer be read nor used, nor a new request answered
    late = await asked(device)
    await db.execute("UPDATE auth_requests SET created_at = created_at - interval '16 minutes'")
    assert (await device.read_answer(request)).status_code == 404
    assert (await device.request_token_with(EMAIL, request)).status_code == 400
    assert (await alice.answer(late.id)).status_code == 404
    assert (await row(db, late))["approved"] is None


async def test_only_the_newest_request_of_a_device_may_be_approved(
    alice: BitwardenClient, new_client: Callable[..., BitwardenClient], db: asyncpg.Connection,
) -> None:
    device = await waiting_device(new_client, alice)
    older = await asked(device)
    newer = await asked(device)
    assert (await alice.answer(older.id)).status_code == 400
    assert (await row(db, older))["approved"] is None
    assert (await alice.answer(newer.id)).status_code == 200


async def test_another_users_request_is_out_of_reach(
    alice: BitwardenClient, bob: BitwardenClient, new_client: Callable[..., BitwardenClient],
    db: asyncpg.Connection,
) -> None:
    device = await waiting_device(new_client, alice)
    request = await asked(device)
    assert (await bob.get(f"/api/auth-requests/{request.id}")).status_code == 404
    assert (await bob.answer(request.id)).status_code == 404
    assert (await bob.get("/api/auth-requests")).json()["data"] == []
    assert (await bob.get("/api/auth-requests/pending")).json()["data"] == []
    assert (await row(db, request))["approved"] is None
    # Bob cannot answer with one of Alice's device identifiers either
    response = await bob.put(f"/api/auth-requests/{request.id}", json={
        "key": None, "deviceIdentifier": alice.device, "requestApproved": True})
    assert response.status_code == 404
    # and Bob's approved request does not log anyone in to Alice's account
    bob_device = new_client()
    await bob_device.login(bob.email, PASSWORD)
    _, bob_request = await bob_device.ask_to_log_in(bob.email)
    assert bob_request is not None and (await bob.answer(bob_request.id)).status_code == 200
    assert (await bob_device.request_token_with(EMAIL, bob_request)).status_code == 400


async def test_only_a_known_device_of_an_existing_account_may_ask(
    alice: BitwardenClient, new_client: Callable[..., BitwardenClient], db: asyncpg.Connection,
) -> None:
    stranger = new_client()
    for email in (EMAIL, "nobody@example.com"):
        response, _ = await stranger.ask_to_log_in(email)
        assert response.status_code == 400
        assert response.json()["message"] == "User or known device not found."
    assert await db.fetchval("SELECT count(*) FROM auth_requests") == 0


async def test_malformed_requests_are_400(alice: BitwardenClient, new_client: Callable[..., BitwardenClient],
                                          db: asyncpg.Connection) -> None:
    device = await waiting_device(new_client, alice)
    good = {"email": EMAIL, "publicKey": "", "deviceIdentifier": device.device, "accessCode": "a" * 25, "type": 0}
    from vaultapi.clientcrypto import make_key_pair
    good["publicKey"] = make_key_pair()[0]
    headers = {"Device-Type": "8"}
    for change in ({"publicKey": "bm90IGEga2V5"}, {"accessCode": "a" * 26}, {"type": 2}, {"type": 7},
                   {"deviceIdentifier": "d" * 51}, {"email": None}):
        response = await device.http.post("/api/auth-requests", json={**good, **change}, headers=headers)
        assert response.status_code == 400, (change, response.text)
    assert (await device.http.post("/api/auth-requests", json=good)).status_code == 400  # no Device-Type
    assert await db.fetchval("SELECT count(*) FROM auth_requests") == 0
    ok = await device.http.post("/api/auth-requests", json=good, headers=headers)
    assert ok.status_code == 200
    request_id = ok.json()["id"]
    for body in ({"deviceIdentifier": alice.device}, {"requestApproved": "yes", "deviceIdentifier": alice.device},
                 {"requestApproved": True, "deviceIdentifier": alice.device, "key": "not an encstring"},
                 {"requestApproved": True, "deviceIdentifier": alice.device},
                 {"requestApproved": True, "deviceIdentifier": "not a device of Alice", "key": "4.AAAA"}):
        response = await alice.put(f"/api/auth-requests/{request_id}", json=body)
        assert response.status_code == 400, (body, response.text)
    assert await db.fetchval("SELECT approved FROM auth_requests") is None
    assert (await alice.put("/api/auth-requests/not-a-uuid", json={})).status_code == 404


async def test_of_two_logins_at_once_with_one_approval_only_one_succeeds(
    alice: BitwardenClient, new_client: Callable[..., BitwardenClient],
) -> None:
    device = await waiting_device(new_client, alice)
    request = await asked(device)
    assert (await alice.answer(request.id)).status_code == 200
    replies = await asyncio.gather(*(device.request_token_with(EMAIL, request) for _ in range(6)))
    assert sorted(reply.status_code for reply in replies) == [200] + [400] * 5
