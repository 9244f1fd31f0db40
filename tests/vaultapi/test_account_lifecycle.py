"""Account settings that end sessions or data: change KDF, purge the vault, delete the account,
avatar color; each after the master password where Bitwarden asks for it, each telling the other
devices what Bitwarden tells them, and a refusal changes nothing."""

from __future__ import annotations

from collections.abc import Callable

import asyncpg

from tests.support.bwclient import BitwardenClient
from tests.support.listen import EventListener
from tests.support.organizations import USER, Organization, grant
from tests.vaultapi.conftest import PASSWORD, assert_event, user_id_of
from vaultapi.clientcrypto import SymmetricKey, master_key, master_password_hash


async def test_kdf_change_re_keys_and_signs_every_other_device_out(
    alice: BitwardenClient, new_client: Callable[..., BitwardenClient], db: asyncpg.Connection,
    events: EventListener,
) -> None:
    phone = new_client()
    await phone.login(alice.email, PASSWORD)
    alice_id = await user_id_of(alice)
    new_iterations = 650_000
    new_master = master_key(PASSWORD, alice.email, new_iterations)
    body = {
        "masterPasswordHash": alice.password_hash(),
        "newMasterPasswordHash": master_password_hash(new_master, PASSWORD),
        "key": SymmetricKey.stretch(new_master).encrypt(alice.user_key.to_bytes()),
        "kdf": 0, "kdfIterations": new_iterations, "kdfMemory": None, "kdfParallelism": None,
    }
    before = await db.fetchrow("SELECT * FROM users WHERE id = $1", alice_id)
    for bad in ({"masterPasswordHash": alice.password_hash("wrong")}, {"kdfIterations": 1000},
                {"kdf": 1, "kdfIterations": 3, "kdfMemory": 4}, {"key": None}):
        assert (await alice.post("/api/accounts/kdf", json={**body, **bad})).status_code == 400, bad
    assert await db.fetchrow("SELECT * FROM users WHERE id = $1", alice_id) == before
    await events.nothing()

    assert (await alice.post("/api/accounts/kdf", json=body)).status_code == 200
    assert_event(await events.next(), 11, alice_id, None, alice.device)
    assert (await phone.get("/api/accounts/profile")).status_code == 401
    assert (await phone.refresh()).status_code == 400
    # the new settings log in and unlock
    await phone.login(alice.email, PASSWORD)
    assert phone.iterations == new_iterations
    assert phone.user_key.to_bytes() == alice.user_key.to_bytes()


async def test_kdf_change_in_the_nested_form_of_newer_clients(alice: BitwardenClient, db: asyncpg.Connection) -> None:
    kdf = {"kdfType": 1, "iterations": 3, "memory": 64, "parallelism": 4}
    new_hash, key = "bmV3IGhhc2g=", alice.encrypt("wrapped user key")
    body = {"masterPasswordHash": alice.password_hash(),
            "authenticationData": {"kdf": kdf, "masterPasswordAuthenticationHash": new_hash, "salt": alice.email},
            "unlockData": {"kdf": {**kdf, "memory": 32}, "masterKeyWrappedUserKey": key, "salt": alice.email}}
    assert (await alice.post("/api/accounts/kdf", json=body)).status_code == 400  # the two disagree
    body["unlockData"]["kdf"] = kdf
    assert (await alice.post("/api/accounts/kdf", json=body)).status_code == 200
    row = await db.fetchrow("SELECT kdf_type, kdf_iterations, kdf_memory, kdf_parallelism, key FROM users")
    assert tuple(row) == (1, 3, 64, 4, key)


async def test_purge_empties_the_vault_with_one_full_sync(
    alice: BitwardenClient, bob: BitwardenClient, db: asyncpg.Connection, events: EventListener,
) -> None:
    folder = (await alice.post("/api/folders", json={"name": alice.encrypt("Work")})).json()["id"]
    for name in ("a", "b"):
        assert (await alice.post("/api/ciphers", json=alice.login_item(name, folder_id=folder))).status_code == 200
    assert (await bob.post("/api/ciphers", json=bob.login_item("Bob's"))).status_code == 200
    while True:
        try:
            await events.next(0.5)
        except TimeoutError:
            break
    assert (await alice.post("/api/ciphers/purge", json={"masterPasswordHash": "bm9wZQ=="})).status_code == 400
    assert await db.fetchval("SELECT count(*) FROM ciphers") == 3
    assert (await alice.post("/api/ciphers/purge", json={"masterPasswordHash": alice.password_hash()})).status_code == 200
    alice_id = await user_id_of(alice)
    received = [(int(e.type), e.user_id) for e in await events.exactly(2)]
    assert sorted(received) == [(4, alice_id), (5, alice_id)]  # the items' bulk delete, then the full sync
    synced = await alice.sync()
    assert synced["ciphers"] == [] and synced["folders"] == []
    assert len((await bob.sync())["ciphers"]) == 1


async def test_deleting_the_account_ends_every_session_and_keeps_others_data(
    alice: BitwardenClient, bob: BitwardenClient, new_client: Callable[..., BitwardenClient],
    db: asyncpg.Connection, events: EventListener,
) -> None:
    alice_id = await user_id_of(alice)
    assert (await alice.post("/api/ciphers", json=alice.login_item("mine"))).status_code == 200
    await events.next()
    assert (await alice.delete("/api/accounts", json={"masterPasswordHash": "bm9wZQ=="})).status_code == 400
    assert (await alice.post("/api/accounts/delete", json={})).status_code == 400
    assert await db.fetchval("SELECT count(*) FROM users WHERE id = $1", alice_id) == 1

    assert (await alice.delete("/api/accounts", json={"masterPasswordHash": alice.password_hash()})).status_code == 200
    first = await events.next()
    assert_event(first, 11, alice_id, None, None)  # every session, the acting one's too
    assert await db.fetchval("SELECT count(*) FROM users WHERE id = $1", alice_id) == 0
    assert await db.fetchval("SELECT count(*) FROM ciphers WHERE user_id = $1", alice_id) == 0
    assert (await alice.get("/api/accounts/profile")).status_code == 401
    assert (await alice.refresh()).status_code == 400
    assert (await bob.get("/api/accounts/profile")).status_code == 200
    # the address is free again
    again = new_client()
    await again.register(alice.email, PASSWORD)


async def test_the_sole_owner_of_an_organization_cannot_delete_the_account(
    alice: BitwardenClient, db: asyncpg.Connection,
) -> None:
    await alice.create_organization()
    refused = await alice.post("/api/accounts/delete", json={"masterPasswordHash": alice.password_hash()})
    assert refused.status_code == 400 and "owner" in refused.json()["message"]
    assert await db.fetchval("SELECT count(*) FROM users") == 1


async def test_avatar_color(alice: BitwardenClient, events: EventListener) -> None:
    changed = await alice.put("/api/accounts/avatar", json={"avatarColor": "#1a2b3c"})
    assert changed.status_code == 200 and changed.json()["avatarColor"] == "#1a2b3c"
    assert_event(await events.next(), 10, await user_id_of(alice), None, alice.device)
    assert (await alice.get("/api/accounts/profile")).json()["avatarColor"] == "#1a2b3c"
    for bad in ("red", "#1a2b3c4", "<script>", 7):
        assert (await alice.put("/api/accounts/avatar", json={"avatarColor": bad})).status_code == 400
    await events.nothing()  # the refusals changed nothing
    cleared = await alice.put("/api/accounts/avatar", json={"avatarColor": None})
    assert cleared.json()["avatarColor"] is None


async def test_organization_purge_needs_full_edit_rights_and_leaves_personal_items(
    alice: BitwardenClient, bob: BitwardenClient, db: asyncpg.Connection,
) -> None:
    organization = await Organization.create(alice)
    await organization.add(bob, USER, [grant(organization.default_collection)])
    await organization.item("Shared", [organization.default_collection])
    assert (await alice.post("/api/ciphers", json=alice.login_item("Personal"))).status_code == 200
    path = f"/api/ciphers/purge?organizationId={organization.id}"
    # a plain member, a wrong password, another organization id: refused, nothing deleted
    assert (await bob.post(path, json={"masterPasswordHash": bob.password_hash()})).status_code == 404
    assert (await alice.post(path, json={"masterPasswordHash": "bm9wZQ=="})).status_code == 400
    other = f"/api/ciphers/purge?organizationId={'0' * 8}-0000-0000-0000-{'0' * 12}"
    assert (await alice.post(other, json={"masterPasswordHash": alice.password_hash()})).status_code == 404
    assert (await alice.post("/api/ciphers/purge?organizationId=x",
                             json={"masterPasswordHash": alice.password_hash()})).status_code == 404
    assert await db.fetchval("SELECT count(*) FROM ciphers") == 2
    assert (await alice.post(path, json={"masterPasswordHash": alice.password_hash()})).status_code == 200
    assert await db.fetchval("SELECT count(*) FROM ciphers WHERE organization_id IS NOT NULL") == 0
    assert await db.fetchval("SELECT count(*) FROM ciphers WHERE organization_id IS NULL") == 1
    assert await db.fetchval("SELECT count(*) FROM collections") == 1
