"""Collections: who sees, creates, edits and deletes them; who holds them; and what deleting one
does to its items."""

from __future__ import annotations

import uuid

import asyncpg

from db.events import PushType
from tests.support.bwclient import BitwardenClient
from tests.support.organizations import ADMIN, CUSTOM, USER, Organization, grant
from tests.support.vaultstate import assert_error_shape
from tests.vaultapi.conftest import assert_event, user_id_of

ACCESS_DETAILS_KEYS = {"id", "organizationId", "name", "externalId", "type", "defaultUserCollectionEmail",
                       "assigned", "readOnly", "hidePasswords", "manage", "unmanaged", "groups", "users", "object"}


async def test_create_with_members_and_read_it_back(alice: BitwardenClient, bob: BitwardenClient,
                                                    events) -> None:
    org = await Organization.create(alice)
    bob_membership = await org.add(bob, USER)
    await events.exactly(2)
    reply = await alice.post(f"{org.path}/collections", {
        "name": alice.org_encrypt(org.id, "Finance"), "externalId": "fin-1", "groups": [],
        "users": [grant(bob_membership, read_only=True)]})
    assert reply.status_code == 200
    created = reply.json()
    assert set(created) == ACCESS_DETAILS_KEYS and created["object"] == "collectionAccessDetails"
    assert (created["externalId"], created["assigned"], created["unmanaged"]) == ("fin-1", False, True)
    assert created["users"] == [grant(bob_membership, read_only=True)]
    # bob now reaches it: his devices sync
    assert_event((await events.exactly(1))[0], PushType.SYNC_VAULT, await user_id_of(bob), None, alice.device)

    for path in (f"{org.path}/collections/{created['id']}/details", ):
        assert (await alice.get(path)).json() == created
    assert (await alice.get(f"{org.path}/collections/{created['id']}/users")).json() == created["users"]
    plain = (await alice.get(f"{org.path}/collections/{created['id']}")).json()
    assert plain["object"] == "collection" and plain["name"] == created["name"]
    everything = (await alice.get(f"{org.path}/collections")).json()["data"]
    assert {c["id"] for c in everything} == {org.default_collection, created["id"]}
    # bob sees only what he holds, with his rights; the details of it are for its managers
    mine = (await bob.get(f"{org.path}/collections")).json()["data"]
    assert [c["id"] for c in mine] == [created["id"]]
    [synced] = (await bob.sync())["collections"]
    assert (synced["id"], synced["readOnly"], synced["manage"]) == (created["id"], True, False)
    assert bob.org_decrypt(org.id, synced["name"]) == "Finance"
    for path in (f"{org.path}/collections/{created['id']}/details", f"{org.path}/collections/{created['id']}/users",
                 f"{org.path}/collections/{org.default_collection}"):
        assert (await bob.get(path)).status_code == 404, path
    assert (await bob.get(f"{org.path}/collections/details")).json()["data"] == []


async def test_who_may_create(alice: BitwardenClient, bob: BitwardenClient, carol: BitwardenClient, events,
                              db: asyncpg.Connection) -> None:
    org = await Organization.create(alice)
    await org.add(bob, USER, [grant(org.default_collection, manage=True)])
    carol_membership = await org.add(carol, CUSTOM, permissions={"createNewCollections": True})
    await events.exactly(3)
    body = {"name": bob.org_encrypt(org.id, "Mine"), "users": []}
    assert (await bob.post(f"{org.path}/collections", body)).status_code == 404  # limitCollectionCreation
    # a creator without full access manages what it makes
    made = (await carol.post(f"{org.path}/collections", {"name": carol.org_encrypt(org.id, "Carol's")})).json()
    assert made["users"] == [grant(carol_membership, manage=True)] and made["assigned"] is True
    assert_event((await events.exactly(1))[0], PushType.SYNC_VAULT, await user_id_of(carol), None, carol.device)
    for spoilt in ({"name": None}, {"name": "2." + "x" * 1000}, {"externalId": "x" * 301},
                   {"users": [grant(str(uuid.uuid4()))]}, {"users": [grant(carol_membership, hide_passwords=True,
                                                                            manage=True)]},
                   {"users": [grant(carol_membership), grant(carol_membership)]}, {"users": [{"id": "x"}]}):
        reply = await alice.post(f"{org.path}/collections", {**body, **spoilt})
        assert reply.status_code == 400, (spoilt, reply.text)
        assert_error_shape(reply)
    assert await db.fetchval("SELECT count(*) FROM collections") == 2
    await events.nothing()


async def test_update_keeps_or_replaces_members(alice: BitwardenClient, bob: BitwardenClient,
                                                carol: BitwardenClient, events) -> None:
    org = await Organization.create(alice)
    bob_membership = await org.add(bob, USER)
    carol_membership = await org.add(carol, USER)
    collection = await org.collection("Team", [grant(bob_membership, manage=True), grant(carol_membership)])
    await events.exactly(5)
    path = f"{org.path}/collections/{collection}"
    # bob manages it: he renames it; users null leaves its members as they were
    renamed = await bob.put(path, {"name": bob.org_encrypt(org.id, "Team A"), "externalId": None, "users": None})
    assert renamed.status_code == 200
    assert {u["id"] for u in renamed.json()["users"]} == {bob_membership, carol_membership}
    await events.nothing()  # a name reaches nobody new
    assert bob.org_decrypt(org.id, (await alice.get(path)).json()["name"]) == "Team A"
    # name null keeps it; a list replaces the members
    replaced = await bob.put(path, {"name": None, "users": [grant(bob_membership, manage=True)]})
    assert replaced.json()["users"] == [grant(bob_membership, manage=True)]
    assert_event((await events.exactly(1))[0], PushType.SYNC_VAULT, await user_id_of(carol), None, bob.device)
    assert (await carol.sync())["collections"] == []
    # carol holds it no more, and never managed it
    assert (await carol.put(path, {"name": None, "users": []})).status_code == 404
    assert (await alice.post(path, {"users": []})).json()["users"] == []  # the old POST form
    await events.exactly(1)


async def test_delete_takes_the_collection_out_of_its_items(alice: BitwardenClient, bob: BitwardenClient,
                                                            events, db: asyncpg.Connection) -> None:
    org = await Organization.create(alice)
    other = await org.collection("Other")
    bob_membership = await org.add(bob, USER, [grant(org.default_collection, manage=True), grant(other)])
    item = await org.item("Both", [org.default_collection, other])
    await events.exactly(3)
    # limitCollectionDeletion: managing a collection is not enough
    assert (await bob.delete(f"{org.path}/collections/{other}")).status_code == 404
    assert (await alice.delete(f"{org.path}/collections/{other}")).status_code == 200
    received = await events.exactly(2)
    assert {(int(e.type), e.user_id, e.org_id, e.item_id) for e in received} == {
        (PushType.SYNC_VAULT, await user_id_of(bob), None, None),  # bob held it
        (PushType.SYNC_CIPHER_UPDATE, None, org.id, item["id"]),  # the item left it
    }
    assert await db.fetchval("SELECT collection_ids FROM ciphers") == [uuid.UUID(org.default_collection)]
    assert (await bob.get(f"/api/ciphers/{item['id']}")).json()["collectionIds"] == [org.default_collection]
    # several at once: all or nothing
    assert (await alice.delete(f"{org.path}/collections", {"ids": [org.default_collection, other]})).status_code == 404
    assert await db.fetchval("SELECT count(*) FROM collections") == 1
    assert (await alice.post(f"{org.path}/collections/delete", {"ids": [org.default_collection]})).status_code == 200
    await events.exactly(2)
    assert await db.fetchval("SELECT collection_ids FROM ciphers") == []
    # the item stays, unassigned: only those who reach every item see it
    assert (await bob.get(f"/api/ciphers/{item['id']}")).status_code == 404
    assert (await alice.get(f"/api/ciphers/{item['id']}")).status_code == 200
    assert await db.fetchval("SELECT count(*) FROM collection_members WHERE membership_id = $1",
                             uuid.UUID(bob_membership)) == 0


async def test_bulk_access(alice: BitwardenClient, bob: BitwardenClient, carol: BitwardenClient, events) -> None:
    org = await Organization.create(alice)
    second = await org.collection("Second")
    bob_membership = await org.add(bob, USER)
    carol_membership = await org.add(carol, ADMIN)
    await events.exactly(3)
    reply = await carol.post(f"{org.path}/collections/bulk-access", {
        "collectionIds": [org.default_collection, second], "groups": [],
        "users": [grant(bob_membership, hide_passwords=True)]})
    assert reply.status_code == 200
    assert_event((await events.exactly(1))[0], PushType.SYNC_VAULT, await user_id_of(bob), None, carol.device)
    synced = (await bob.sync())["collections"]
    assert {(c["id"], c["hidePasswords"]) for c in synced} == {(org.default_collection, True), (second, True)}
    # the same again changes nothing, publishes nothing
    assert (await carol.post(f"{org.path}/collections/bulk-access", {
        "collectionIds": [second], "users": [grant(bob_membership, hide_passwords=True)]})).status_code == 200
    await events.nothing()
    assert (await bob.post(f"{org.path}/collections/bulk-access", {
        "collectionIds": [second], "users": [grant(bob_membership)]})).status_code == 404
    assert (await carol.post(f"{org.path}/collections/bulk-access", {
        "collectionIds": [str(uuid.uuid4())], "users": [grant(carol_membership)]})).status_code == 404


async def test_my_collections_span_organizations(alice: BitwardenClient, bob: BitwardenClient, events) -> None:
    first, second = await Organization.create(alice, "First"), await Organization.create(bob, "Second")
    await first.add(bob, USER, [grant(first.default_collection, read_only=True)])
    mine = (await bob.get("/api/collections")).json()["data"]
    assert {(c["organizationId"], c["readOnly"], c["manage"]) for c in mine} == {
        (first.id, True, False), (second.id, False, True)}
    assert {c["object"] for c in mine} == {"collectionDetails"}
