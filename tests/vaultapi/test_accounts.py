"""Accounts: profile, revision date, user key id, password change, session resets."""

from __future__ import annotations

from tests.support.bwclient import BitwardenClient
from tests.vaultapi.conftest import PASSWORD, assert_event, user_id_of


async def test_profile_get_and_update(alice: BitwardenClient, events) -> None:
    profile = (await alice.get("/api/accounts/profile")).json()
    assert profile["object"] == "profile" and profile["email"] == "alice@example.com"
    assert profile["name"] == "Alice" and profile["key"] == alice.tokens["Key"]
    updated = await alice.put("/api/accounts/profile", {"name": "Alice B", "culture": "de-DE",
                                                        "masterPasswordHint": "hint"})
    assert updated.status_code == 200
    assert (updated.json()["name"], updated.json()["culture"]) == ("Alice B", "de-DE")
    assert (await alice.get("/api/accounts/profile")).json()["name"] == "Alice B"
    assert (await alice.post("/api/accounts/profile", {"name": 7})).status_code == 400


async def test_revision_date_is_epoch_ms_and_moves_on_change(alice: BitwardenClient, events) -> None:
    before = (await alice.get("/api/accounts/revision-date")).json()
    assert isinstance(before, int) and before > 1_600_000_000_000
    await alice.post("/api/folders", {"name": alice.encrypt("x")})
    await events.next()
    assert (await alice.get("/api/accounts/revision-date")).json() > before


async def test_user_key_id_is_stored_once_and_echoed_in_sync(alice: BitwardenClient) -> None:
    key_id = "0123456789abcdef0123456789abcdef"
    assert (await alice.get("/api/sync")).json()["userDecryption"]["userKeyId"] is None
    before = (await alice.get("/api/accounts/revision-date")).json()
    path = "/api/accounts/key-management/user-key-id"
    assert (await alice.post(path, {"userKeyId": key_id})).status_code == 200
    assert (await alice.get("/api/accounts/revision-date")).json() > before
    assert (await alice.get("/api/sync")).json()["userDecryption"]["userKeyId"] == key_id
    assert (await alice.post(path, {"userKeyId": key_id})).status_code == 200
    assert (await alice.post(path, {"userKeyId": "f" * 32})).status_code == 400
    for bad in ({"userKeyId": "ABC"}, {"userKeyId": 5}, {}):
        assert (await alice.post(path, bad)).status_code == 400
    assert (await alice.get("/api/sync")).json()["userDecryption"]["userKeyId"] == key_id


async def test_password_change_logs_out_every_session(alice: BitwardenClient, new_client, events) -> None:
    me = await user_id_of(alice)
    other_device = new_client()
    await other_device.login("alice@example.com", PASSWORD)
    from vaultapi.clientcrypto import SymmetricKey, master_key, master_password_hash

    new_password = "a brand new passphrase"
    new_master = master_key(new_password, alice.email, alice.iterations)
    new_key = SymmetricKey.stretch(new_master).encrypt(alice.user_key.to_bytes())
    wrong = await alice.post("/api/accounts/password", {
        "masterPasswordHash": alice.password_hash("wrong"),
        "newMasterPasswordHash": master_password_hash(new_master, new_password), "key": new_key})
    assert wrong.status_code == 400
    await events.nothing()

    reply = await alice.post("/api/accounts/password", {
        "masterPasswordHash": alice.password_hash(),
        "newMasterPasswordHash": master_password_hash(new_master, new_password),
        "masterPasswordHint": None, "key": new_key})
    assert reply.status_code == 200
    assert_event((await events.exactly(1))[0], 11, me, None, alice.device)

    for client in (alice, other_device):
        assert (await client.get("/api/sync")).status_code == 401
        assert (await client.refresh()).status_code == 400
    assert (await alice.request_token()).status_code == 400
    relogged = new_client()
    await relogged.login("alice@example.com", new_password)
    assert relogged.user_key == alice.user_key


async def test_security_stamp_reset_logs_out_with_no_context(alice: BitwardenClient, events) -> None:
    me = await user_id_of(alice)
    refused = await alice.post("/api/accounts/security-stamp", {"masterPasswordHash": alice.password_hash("no")})
    assert refused.status_code == 400
    reply = await alice.post("/api/accounts/security-stamp", {"masterPasswordHash": alice.password_hash()})
    assert reply.status_code == 200
    assert_event((await events.exactly(1))[0], 11, me, None, None)
    assert (await alice.get("/api/sync")).status_code == 401
    assert (await alice.refresh()).status_code == 400
    await alice.login()
    assert (await alice.get("/api/sync")).status_code == 200


async def test_verify_password(alice: BitwardenClient) -> None:
    assert (await alice.post("/api/accounts/verify-password",
                             {"masterPasswordHash": alice.password_hash()})).status_code == 200
    assert (await alice.post("/api/accounts/verify-password",
                             {"masterPasswordHash": alice.password_hash("x")})).status_code == 400
