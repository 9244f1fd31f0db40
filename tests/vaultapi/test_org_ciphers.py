"""An organization's items: created in collections, shared from a personal vault, moved between
collections, imported, listed for admins; and what each member's rights let them do."""

from __future__ import annotations

import uuid

import asyncpg

from db.events import PushType
from tests.support.bwclient import BitwardenClient
from tests.support.organizations import ADMIN, USER, Organization, grant
from tests.support.vaultstate import assert_error_shape
from tests.vaultapi.conftest import assert_event, user_id_of


async def test_create_in_collections_publishes_for_the_organization(alice: BitwardenClient, bob: BitwardenClient,
                                                                    carol: BitwardenClient, events,
                                                                    db: asyncpg.Connection) -> None:
    org = await Organization.create(alice)
    hidden = await org.collection("Hidden")
    await org.add(bob, USER, [grant(org.default_collection)])
    await org.add(carol, USER, [grant(hidden)])
    await events.exactly(3)
    reply = await bob.post("/api/ciphers/create", {"cipher": bob.org_item(org.id, "Wifi", password="pa55"),
                                                   "collectionIds": [org.default_collection]})
    assert reply.status_code == 200, reply.text
    item = reply.json()
    assert (item["organizationId"], item["collectionIds"], item["edit"], item["viewPassword"]) == (
        org.id, [org.default_collection], True, True)
    assert item["permissions"] == {"delete": True, "restore": True} and item["organizationUseTotp"] is True
    assert bob.org_decrypt(org.id, item["login"]["password"]) == "pa55"
    # one statement on ciphers: the organization's item event, no user named
    assert_event((await events.exactly(1))[0], PushType.SYNC_CIPHER_CREATE, None, item["id"], bob.device)
    row = await db.fetchrow("SELECT user_id, organization_id, collection_ids FROM ciphers")
    assert (row["user_id"], str(row["organization_id"]), row["collection_ids"]) == (
        None, org.id, [uuid.UUID(org.default_collection)])
    assert [c["id"] for c in (await alice.sync())["ciphers"]] == [item["id"]]
    assert (await carol.sync())["ciphers"] == []
    assert (await carol.get(f"/api/ciphers/{item['id']}")).status_code == 404
    assert (await alice.get(f"/api/ciphers/{item['id']}/details")).json() == item
    assert [c["id"] for c in (await bob.get("/api/ciphers")).json()["data"]] == [item["id"]]


async def test_create_refusals(alice: BitwardenClient, bob: BitwardenClient, carol: BitwardenClient, events,
                               db: asyncpg.Connection) -> None:
    org = await Organization.create(alice)
    hidden = await org.collection("Hidden")
    await org.add(bob, USER, [grant(org.default_collection, read_only=True)])
    other = await Organization.create(carol)
    await events.exactly(3)
    cases = [
        # a User must put the item in a collection it may edit
        (bob, {"cipher": bob.org_item(org.id, "x"), "collectionIds": []}),
        (bob, {"cipher": bob.org_item(org.id, "x"), "collectionIds": [org.default_collection]}),
        (bob, {"cipher": bob.org_item(org.id, "x"), "collectionIds": [hidden]}),
        (alice, {"cipher": alice.org_item(org.id, "x"), "collectionIds": [other.default_collection]}),
        (alice, {"cipher": alice.org_item(org.id, "x"), "collectionIds": [str(uuid.uuid4())]}),
        # an organization one is not in: an invalid value in the body
        (alice, {"cipher": carol.org_item(other.id, "x"), "collectionIds": [other.default_collection]}),
        (alice, {"cipher": {**alice.login_item("x"), "organizationId": str(uuid.uuid4())}, "collectionIds": []}),
        (alice, {"cipher": alice.login_item("personal"), "collectionIds": [org.default_collection]}),
        (alice, {"cipher": {**alice.org_item(org.id, "x"), "encryptedFor": await user_id_of(bob)},
                 "collectionIds": [org.default_collection]}),
    ]
    for client, body in cases:
        reply = await client.post("/api/ciphers/create", body)
        assert reply.status_code == 400, (body, reply.text)
        assert_error_shape(reply)
    assert (await bob.post("/api/ciphers", bob.org_item(org.id, "x"))).status_code == 400
    assert await db.fetchval("SELECT count(*) FROM ciphers") == 0
    await events.nothing()
    # an Owner may leave an item out of every collection: only full access reaches it then
    unassigned = await alice.post("/api/ciphers", alice.org_item(org.id, "Loose"))
    assert unassigned.status_code == 200 and unassigned.json()["collectionIds"] == []
    assert (await bob.sync())["ciphers"] == []


async def test_share_moves_a_personal_item_into_the_organization(alice: BitwardenClient, bob: BitwardenClient,
                                                                 carol: BitwardenClient, events,
                                                                 db: asyncpg.Connection) -> None:
    org = await Organization.create(alice)
    await org.add(bob, USER, [grant(org.default_collection)])
    folder = (await bob.post("/api/folders", {"name": bob.encrypt("Work")})).json()["id"]
    personal = (await bob.post("/api/ciphers", {**bob.login_item("Mail", folder_id=folder), "favorite": True})).json()
    await events.exactly(4)
    bob_id = await user_id_of(bob)
    shared_body = {**bob.org_item(org.id, "Mail"), "folderId": folder, "favorite": True,
                   "encryptedFor": bob_id, "lastKnownRevisionDate": personal["revisionDate"]}
    refused = [
        (carol, personal["id"], shared_body, [org.default_collection], 404),  # not hers
        (bob, personal["id"], shared_body, [], 400),
        (bob, personal["id"], {**shared_body, "organizationId": None}, [org.default_collection], 400),
        (bob, personal["id"], {**shared_body, "encryptedFor": await user_id_of(carol)}, [org.default_collection], 400),
        (bob, personal["id"], {**shared_body, "lastKnownRevisionDate": "2020-01-01T00:00:00.000Z"},
         [org.default_collection], 400),
    ]
    for client, cipher_id, body, collections, status in refused:
        reply = await client.put(f"/api/ciphers/{cipher_id}/share", {"cipher": body, "collectionIds": collections})
        assert reply.status_code == status, (body, reply.text)
    await events.nothing()

    reply = await bob.put(f"/api/ciphers/{personal['id']}/share",
                          {"cipher": shared_body, "collectionIds": [org.default_collection]})
    assert reply.status_code == 200, reply.text
    shared = reply.json()
    assert (shared["id"], shared["organizationId"], shared["folderId"], shared["favorite"]) == (
        personal["id"], org.id, folder, True)
    assert bob.org_decrypt(org.id, shared["name"]) == "Mail"
    # gone from bob's own vault, new in the organization: one statement, both events
    received = await events.exactly(2)
    assert {(int(e.type), e.user_id, e.org_id, e.item_id) for e in received} == {
        (PushType.SYNC_LOGIN_DELETE, bob_id, None, personal["id"]),
        (PushType.SYNC_CIPHER_CREATE, None, org.id, personal["id"])}
    assert await db.fetchval("SELECT user_id FROM ciphers WHERE id = $1", uuid.UUID(personal["id"])) is None
    [seen] = (await alice.sync())["ciphers"]
    assert (seen["id"], seen["folderId"], seen["favorite"]) == (personal["id"], None, False)  # placement is bob's
    # an organization's item is shared already
    again = await bob.post(f"/api/ciphers/{personal['id']}/share",
                           {"cipher": shared_body, "collectionIds": [org.default_collection]})
    assert again.status_code == 404


async def test_bulk_share(alice: BitwardenClient, bob: BitwardenClient, events, db: asyncpg.Connection) -> None:
    org = await Organization.create(alice)
    await org.add(bob, USER, [grant(org.default_collection)])
    items = [(await bob.post("/api/ciphers", bob.login_item(name))).json() for name in ("One", "Two")]
    alices = (await alice.post("/api/ciphers", alice.login_item("Hers"))).json()
    await events.exactly(5)
    bob_id = await user_id_of(bob)

    def body(*cipher_ids: str) -> dict:
        return {"ciphers": [{**bob.org_item(org.id, "shared"), "id": cipher_id} for cipher_id in cipher_ids],
                "collectionIds": [org.default_collection], "encryptedFor": bob_id}

    assert (await bob.put("/api/ciphers/share", body(items[0]["id"], alices["id"]))).status_code == 404
    foreign = {**body(items[0]["id"]), "encryptedFor": await user_id_of(alice)}
    assert (await bob.put("/api/ciphers/share", foreign)).status_code == 400
    await events.nothing()
    reply = await bob.put("/api/ciphers/share", body(*(item["id"] for item in items)))
    assert reply.status_code == 200, reply.text
    assert {entry["id"] for entry in reply.json()["data"]} == {item["id"] for item in items}
    received = await events.exactly(2)
    assert {(int(e.type), e.user_id, e.org_id) for e in received} == {
        (PushType.SYNC_CIPHERS, bob_id, None), (PushType.SYNC_CIPHERS, None, org.id)}
    assert await db.fetchval("SELECT count(*) FROM ciphers WHERE organization_id IS NOT NULL") == 2


async def test_collections_v2_moves_an_item_as_far_as_the_member_may(alice: BitwardenClient, bob: BitwardenClient,
                                                                       events, db: asyncpg.Connection) -> None:
    org = await Organization.create(alice)
    second, hidden = await org.collection("Second"), await org.collection("Hidden")
    await org.add(bob, USER, [grant(org.default_collection), grant(second)])
    item = await org.item("Moving", [org.default_collection, hidden])
    await events.exactly(3)
    path = f"/api/ciphers/{item['id']}/collections_v2"
    # bob sees only his collection of it; the hidden one stays, whatever he sends
    assert (await bob.get(f"/api/ciphers/{item['id']}")).json()["collectionIds"] == [org.default_collection]
    moved = (await bob.put(path, {"collectionIds": [second]})).json()
    assert (moved["object"], moved["unavailable"], moved["cipher"]["collectionIds"]) == (
        "optionalCipherDetails", False, [second])
    assert_event((await events.exactly(1))[0], PushType.SYNC_CIPHER_UPDATE, None, item["id"], bob.device)
    assert set(await db.fetchval("SELECT collection_ids FROM ciphers")) == {uuid.UUID(hidden), uuid.UUID(second)}
    assert (await bob.put(path, {"collectionIds": [hidden]})).status_code == 400
    # out of all of his: unavailable to him, still in the hidden one
    gone = (await bob.put(path, {"collectionIds": []})).json()
    assert (gone["unavailable"], gone["cipher"]) == (True, None)
    await events.exactly(1)
    assert (await bob.get(f"/api/ciphers/{item['id']}")).status_code == 404
    assert await db.fetchval("SELECT collection_ids FROM ciphers") == [uuid.UUID(hidden)]
    # the old endpoint answers the item
    back = await alice.post(f"/api/ciphers/{item['id']}/collections", {"collectionIds": [org.default_collection]})
    assert back.status_code == 200 and back.json()["collectionIds"] == [org.default_collection]
    # a personal item has no collections
    personal = (await alice.post("/api/ciphers", alice.login_item("Mine"))).json()
    assert (await alice.put(f"/api/ciphers/{personal['id']}/collections_v2",
                            {"collectionIds": [second]})).status_code == 404


async def test_rights_of_read_only_and_hidden_password_members(alice: BitwardenClient, bob: BitwardenClient,
                                                               carol: BitwardenClient, events,
                                                               db: asyncpg.Connection) -> None:
    org = await Organization.create(alice)
    await org.add(bob, USER, [grant(org.default_collection, read_only=True)])
    await org.add(carol, USER, [grant(org.default_collection, hide_passwords=True)])
    item = await org.item("Locked", [org.default_collection])
    await events.exactly(4)
    seen = (await bob.get(f"/api/ciphers/{item['id']}")).json()
    assert (seen["edit"], seen["viewPassword"], seen["permissions"]) == (False, True, {"delete": False, "restore": False})
    hidden = (await carol.get(f"/api/ciphers/{item['id']}")).json()
    assert (hidden["edit"], hidden["viewPassword"], hidden["permissions"]["delete"]) == (True, False, True)
    before = await db.fetchval("SELECT to_jsonb(c)::text FROM ciphers c")

    edit = {**bob.org_item(org.id, "Changed"), "lastKnownRevisionDate": item["revisionDate"]}
    for method, path, body, message in (
        ("PUT", f"/api/ciphers/{item['id']}", edit, "edit"),
        ("PUT", f"/api/ciphers/{item['id']}/delete", None, "delete"),
        ("DELETE", f"/api/ciphers/{item['id']}", None, "delete"),
        ("PUT", "/api/ciphers/delete", {"ids": [item["id"]]}, "delete"),
        ("PUT", f"/api/ciphers/{item['id']}/collections_v2", {"collectionIds": []}, "edit"),
        ("PUT", f"/api/ciphers/{item['id']}", {**edit, "organizationId": None}, "mismatch"),
    ):
        reply = await bob.call(method, path, body)
        assert reply.status_code == 400 and message in reply.json()["message"], (method, path, reply.text)
    # hiding passwords also hides the item's collections from editing
    assert (await carol.put(f"/api/ciphers/{item['id']}/collections_v2", {"collectionIds": []})).status_code == 404
    await events.nothing()
    assert await db.fetchval("SELECT to_jsonb(c)::text FROM ciphers c") == before

    # placement is each member's own, read-only or not
    folder = (await bob.post("/api/folders", {"name": bob.encrypt("Mine")})).json()["id"]
    placed = (await bob.put(f"/api/ciphers/{item['id']}/partial", {"folderId": folder, "favorite": True})).json()
    assert (placed["folderId"], placed["favorite"]) == (folder, True)
    assert (await alice.get(f"/api/ciphers/{item['id']}")).json()["folderId"] is None
    assert (await bob.put("/api/ciphers/move", {"ids": [item["id"]], "folderId": None})).status_code == 200
    # carol may edit and delete
    assert (await carol.put(f"/api/ciphers/{item['id']}", {**carol.org_item(org.id, "By Carol")})).status_code == 200
    assert (await carol.put(f"/api/ciphers/{item['id']}/delete")).status_code == 200
    trashed = (await bob.get(f"/api/ciphers/{item['id']}")).json()
    assert trashed["deletedDate"] is not None
    assert (await bob.put(f"/api/ciphers/{item['id']}/restore")).status_code == 400
    assert (await carol.put("/api/ciphers/restore", {"ids": [item["id"]]})).json()["data"][0]["deletedDate"] is None
    assert (await carol.delete(f"/api/ciphers/{item['id']}")).status_code == 200
    assert await db.fetchval("SELECT count(*) FROM ciphers") == 0


async def test_organization_details_for_members_who_reach_every_item(alice: BitwardenClient, bob: BitwardenClient,
                                                                     carol: BitwardenClient, events) -> None:
    org = await Organization.create(alice)
    await org.add(bob, ADMIN)
    await org.add(carol, USER, [grant(org.default_collection, manage=True)])
    assigned = await org.item("Assigned", [org.default_collection])
    loose = (await alice.post("/api/ciphers", alice.org_item(org.id, "Loose"))).json()
    listed = (await bob.get(f"/api/ciphers/organization-details?organizationId={org.id}")).json()["data"]
    assert [(i["id"], i["collectionIds"], i["object"]) for i in listed] == [
        (assigned["id"], [org.default_collection], "cipherMiniDetails"), (loose["id"], [], "cipherMiniDetails")]
    assert "edit" not in listed[0] and "folderId" not in listed[0]
    for client, query in ((carol, f"organizationId={org.id}"), (alice, f"organizationId={uuid.uuid4()}"),
                          (alice, "organizationId=x"), (alice, "")):
        assert (await client.get(f"/api/ciphers/organization-details?{query}")).status_code == 404


async def test_import_into_the_organization(alice: BitwardenClient, bob: BitwardenClient, carol: BitwardenClient,
                                            events, db: asyncpg.Connection) -> None:
    org = await Organization.create(alice)
    await org.add(bob, USER, [grant(org.default_collection)])
    await events.exactly(2)
    body = {
        "ciphers": [alice.org_item(org.id, "A"), alice.org_item(org.id, "B"), alice.org_item(org.id, "C")],
        "collections": [{"id": org.default_collection, "name": alice.org_encrypt(org.id, "ignored")},
                        {"id": None, "name": alice.org_encrypt(org.id, "Imported"), "externalId": None}],
        "collectionRelationships": [{"key": 0, "value": 0}, {"key": 1, "value": 1}, {"key": 0, "value": 1}],
        "folders": [], "folderRelationships": [],
    }
    path = f"/api/ciphers/import-organization?organizationId={org.id}"
    refused = await bob.post(path, body)
    assert refused.status_code == 400 and "privileges" in refused.json()["message"]
    assert (await carol.post(path, body)).status_code == 404
    spoilt = {**body, "collectionRelationships": [{"key": 5, "value": 0}]}
    assert (await alice.post(path, spoilt)).status_code == 400
    assert await db.fetchval("SELECT count(*) FROM ciphers") == 0
    await events.nothing()

    assert (await alice.post(path, body)).status_code == 200
    received = await events.exactly(2)  # the importer's SyncVault; the organization's bulk one
    assert {(int(e.type), e.user_id, e.org_id) for e in received} == {
        (PushType.SYNC_VAULT, await user_id_of(alice), None), (PushType.SYNC_VAULT, None, org.id)}
    imported = await db.fetchval("SELECT id FROM collections WHERE id <> $1", uuid.UUID(org.default_collection))
    rows = {alice.org_decrypt(org.id, row["name"]): row["collection_ids"]
            for row in await db.fetch("SELECT data->>'name' AS name, collection_ids FROM ciphers")}
    assert rows == {"A": [uuid.UUID(org.default_collection), imported], "B": [imported], "C": []}
    assert sorted(bob.org_decrypt(org.id, c["name"]) for c in (await bob.sync())["ciphers"]) == ["A"]


async def test_assigned_items_are_those_the_member_reaches(alice: BitwardenClient, bob: BitwardenClient,
                                                          carol: BitwardenClient) -> None:
    org = await Organization.create(alice)
    hidden = await org.collection("Hidden")
    await org.add(bob, USER, [grant(org.default_collection)])
    shared = await org.item("Shared", [org.default_collection])
    secret = await org.item("Secret", [hidden])
    path = f"/api/ciphers/organization-details/assigned?organizationId={org.id}"
    listed = (await bob.get(path)).json()
    assert [item["id"] for item in listed["data"]] == [shared["id"]]
    assert listed["data"][0]["collectionIds"] == [org.default_collection] and listed["object"] == "list"
    assert bob.org_decrypt(org.id, listed["data"][0]["name"]) == "Shared"
    assert {item["id"] for item in (await alice.get(path)).json()["data"]} == {shared["id"], secret["id"]}
    for client, query in ((carol, org.id), (bob, str(uuid.uuid4())), (bob, "nonsense")):
        reply = await client.get(f"/api/ciphers/organization-details/assigned?organizationId={query}")
        assert reply.status_code == 404
