"""Ciphers: every route, its event, bad input, and other users' items looking nonexistent."""

from __future__ import annotations

import uuid

from tests.support.bwclient import BitwardenClient
from tests.vaultapi.conftest import assert_event, running_api, user_id_of


async def create(client: BitwardenClient, name: str, **kwargs) -> dict:
    reply = await client.post("/api/ciphers", client.login_item(name, **kwargs))
    assert reply.status_code == 200, reply.text
    return reply.json()


async def test_create_returns_the_item_as_sent_and_publishes_create(alice: BitwardenClient, events) -> None:
    me = await user_id_of(alice)
    sent = alice.login_item("Bank", username="alice", password="hunter2")
    reply = await alice.post("/api/ciphers", sent)
    item = reply.json()
    assert reply.status_code == 200
    assert item["object"] == "cipherDetails" and item["type"] == 1
    assert alice.decrypt(item["name"]) == "Bank"
    assert alice.decrypt(item["login"]["password"]) == "hunter2"
    assert item["login"] == sent["login"]
    assert item["organizationId"] is None and item["folderId"] is None and item["deletedDate"] is None
    assert item["edit"] is True and item["viewPassword"] is True
    assert item["permissions"] == {"delete": True, "restore": True} and item["collectionIds"] == []
    assert item["revisionDate"].endswith("Z") and item["creationDate"].endswith("Z")
    assert_event(await events.next(), 1, me, item["id"], alice.device)


async def test_create_route_with_collections_wrapper(alice: BitwardenClient, events) -> None:
    me = await user_id_of(alice)
    reply = await alice.post("/api/ciphers/create", {"cipher": alice.login_item("Wrapped"), "collectionIds": []})
    assert reply.status_code == 200
    assert alice.decrypt(reply.json()["name"]) == "Wrapped"
    assert_event(await events.next(), 1, me, reply.json()["id"], alice.device)
    refused = await alice.post("/api/ciphers/create", {"cipher": alice.login_item("X"),
                                                       "collectionIds": [str(uuid.uuid4())]})
    assert refused.status_code == 400
    await events.nothing()


async def test_get_and_details_and_list(alice: BitwardenClient) -> None:
    item = await create(alice, "Mail")
    for path in (f"/api/ciphers/{item['id']}", f"/api/ciphers/{item['id']}/details"):
        reply = await alice.get(path)
        assert reply.status_code == 200 and reply.json() == item
    listed = (await alice.get("/api/ciphers")).json()
    assert [c["id"] for c in listed["data"]] == [item["id"]]


async def test_update_by_put_and_post_publishes_update(alice: BitwardenClient, events) -> None:
    me = await user_id_of(alice)
    item = await create(alice, "Old name")
    await events.next()
    folder = (await alice.post("/api/folders", {"name": alice.encrypt("F")})).json()
    await events.next()
    edit = {**alice.login_item("New name", folder_id=folder["id"]), "favorite": True,
            "lastKnownRevisionDate": item["revisionDate"]}
    updated = (await alice.put(f"/api/ciphers/{item['id']}", edit)).json()
    assert alice.decrypt(updated["name"]) == "New name"
    assert updated["folderId"] == folder["id"] and updated["favorite"] is True
    assert updated["revisionDate"] > item["revisionDate"]
    assert_event(await events.next(), 0, me, item["id"], alice.device)
    again = await alice.post(f"/api/ciphers/{item['id']}", alice.login_item("Third"))
    assert again.status_code == 200 and again.json()["folderId"] is None
    assert_event(await events.next(), 0, me, item["id"], alice.device)


async def test_update_from_a_stale_copy_is_refused(alice: BitwardenClient, events) -> None:
    item = await create(alice, "A")
    stale = {**alice.login_item("B"), "lastKnownRevisionDate": "2020-01-01T00:00:00.000Z"}
    await events.next()
    reply = await alice.put(f"/api/ciphers/{item['id']}", stale)
    assert reply.status_code == 400 and "out of date" in reply.json()["message"]
    await events.nothing()


async def test_partial_sets_folder_and_favorite(alice: BitwardenClient, events) -> None:
    me = await user_id_of(alice)
    item = await create(alice, "P")
    folder = (await alice.post("/api/folders", {"name": alice.encrypt("F")})).json()
    await events.exactly(2)
    reply = await alice.put(f"/api/ciphers/{item['id']}/partial", {"folderId": folder["id"], "favorite": True})
    assert reply.status_code == 200
    assert (reply.json()["folderId"], reply.json()["favorite"]) == (folder["id"], True)
    assert reply.json()["name"] == item["name"]
    assert_event(await events.next(), 0, me, item["id"], alice.device)


async def test_soft_delete_restore_and_hard_delete(alice: BitwardenClient, events) -> None:
    me = await user_id_of(alice)
    item = await create(alice, "Trash me")
    await events.next()
    assert (await alice.put(f"/api/ciphers/{item['id']}/delete")).status_code == 200
    assert_event(await events.next(), 0, me, item["id"], alice.device)
    assert (await alice.get(f"/api/ciphers/{item['id']}")).json()["deletedDate"] is not None

    restored = await alice.put(f"/api/ciphers/{item['id']}/restore")
    assert restored.status_code == 200 and restored.json()["deletedDate"] is None
    assert_event(await events.next(), 0, me, item["id"], alice.device)

    assert (await alice.delete(f"/api/ciphers/{item['id']}")).status_code == 200
    assert_event(await events.next(), 2, me, item["id"], alice.device)
    assert (await alice.get(f"/api/ciphers/{item['id']}")).status_code == 404

    other = await create(alice, "By post")
    await events.next()
    assert (await alice.post(f"/api/ciphers/{other['id']}/delete")).status_code == 200
    assert_event(await events.next(), 2, me, other["id"], alice.device)


async def test_bulk_routes_publish_one_event_each(alice: BitwardenClient, events) -> None:
    me = await user_id_of(alice)
    ids = [(await create(alice, f"item {n}"))["id"] for n in range(3)]
    folder = (await alice.post("/api/folders", {"name": alice.encrypt("F")})).json()
    await events.exactly(4)

    assert (await alice.put("/api/ciphers/move", {"ids": ids, "folderId": folder["id"]})).status_code == 200
    assert_event((await events.exactly(1))[0], 4, me, None, alice.device)
    assert {c["folderId"] for c in (await alice.get("/api/ciphers")).json()["data"]} == {folder["id"]}

    assert (await alice.put("/api/ciphers/delete", {"ids": ids[:2]})).status_code == 200
    assert_event((await events.exactly(1))[0], 4, me, None, alice.device)
    restored = await alice.put("/api/ciphers/restore", {"ids": ids[:2]})
    assert {c["id"] for c in restored.json()["data"]} == set(ids[:2])
    assert all(c["deletedDate"] is None for c in restored.json()["data"])
    assert_event((await events.exactly(1))[0], 4, me, None, alice.device)

    assert (await alice.post("/api/ciphers/delete", {"ids": ids[:2]})).status_code == 200
    assert_event((await events.exactly(1))[0], 4, me, None, alice.device)
    assert (await alice.delete("/api/ciphers", {"ids": ids[2:]})).status_code == 200
    assert_event((await events.exactly(1))[0], 2, me, ids[2], alice.device)
    assert (await alice.get("/api/ciphers")).json()["data"] == []


async def test_import_publishes_exactly_one_sync_vault(alice: BitwardenClient, events, db) -> None:
    me = await user_id_of(alice)
    existing = (await alice.post("/api/folders", {"name": alice.encrypt("Existing")})).json()
    await events.next()
    reply = await alice.post("/api/ciphers/import", {
        "ciphers": [alice.login_item(f"imported {n}") for n in range(5)],
        "folders": [{"name": alice.encrypt("New A")}, {"name": alice.encrypt("New B")},
                    {"id": existing["id"], "name": existing["name"]}],
        "folderRelationships": [{"key": 0, "value": 0}, {"key": 1, "value": 1}, {"key": 2, "value": 2}],
    })
    assert reply.status_code == 200, reply.text
    assert_event((await events.exactly(1))[0], 5, me, None, alice.device)
    sync = (await alice.get("/api/sync")).json()
    names = {f["id"]: alice.decrypt(f["name"]) for f in sync["folders"]}
    assert sorted(names.values()) == ["Existing", "New A", "New B"]
    placed = {alice.decrypt(c["name"]): names.get(c["folderId"]) for c in sync["ciphers"]}
    assert placed == {"imported 0": "New A", "imported 1": "New B", "imported 2": "Existing",
                      "imported 3": None, "imported 4": None}


async def test_import_of_one_item_still_syncs_the_vault(alice: BitwardenClient, events) -> None:
    me = await user_id_of(alice)
    reply = await alice.post("/api/ciphers/import", {"ciphers": [alice.login_item("only")], "folders": [],
                                                     "folderRelationships": []})
    assert reply.status_code == 200
    [event] = await events.exactly(1)
    assert (event.type, event.user_id, event.item_id, event.device_identifier) == (5, me, None, alice.device)


async def test_bad_import_writes_nothing(alice: BitwardenClient, events, db) -> None:
    bad_item = {**alice.login_item("broken"), "type": 99}
    for body in (
        {"ciphers": [alice.login_item("ok"), bad_item], "folders": []},
        {"ciphers": [alice.login_item("ok")], "folders": [{"name": alice.encrypt("F")}],
         "folderRelationships": [{"key": 0, "value": 7}]},
        {"ciphers": "nope"},
    ):
        reply = await alice.post("/api/ciphers/import", body)
        assert reply.status_code == 400, body
    await events.nothing()
    assert await db.fetchval("SELECT count(*) FROM ciphers") == 0
    assert await db.fetchval("SELECT count(*) FROM folders") == 0


async def test_other_users_items_are_404_and_untouched(alice: BitwardenClient, bob: BitwardenClient, events) -> None:
    item = await create(alice, "Private")
    await events.next()
    path = f"/api/ciphers/{item['id']}"
    for reply in (
        await bob.get(path),
        await bob.get(f"{path}/details"),
        await bob.put(path, bob.login_item("Mine now")),
        await bob.post(path, bob.login_item("Mine now")),
        await bob.put(f"{path}/partial", {"favorite": True}),
        await bob.put(f"{path}/delete"),
        await bob.put(f"{path}/restore"),
        await bob.delete(path),
        await bob.post(f"{path}/delete"),
        await bob.put("/api/ciphers/move", {"ids": [item["id"]], "folderId": None}),
        await bob.put("/api/ciphers/delete", {"ids": [item["id"]]}),
        await bob.post("/api/ciphers/delete", {"ids": [item["id"]]}),
        await bob.put("/api/ciphers/restore", {"ids": [item["id"]]}),
        await bob.get(f"/api/ciphers/{uuid.uuid4()}"),
    ):
        assert reply.status_code == 404, reply.request.url
        assert reply.json()["object"] == "error"
    await events.nothing()
    assert (await alice.get(path)).json() == item
    assert (await bob.get("/api/ciphers")).json()["data"] == []


async def test_bulk_with_one_foreign_id_changes_nothing(alice: BitwardenClient, bob: BitwardenClient, events) -> None:
    mine = await create(bob, "bob's")
    theirs = await create(alice, "alice's")
    await events.exactly(2)
    reply = await bob.post("/api/ciphers/delete", {"ids": [mine["id"], theirs["id"]]})
    assert reply.status_code == 404
    await events.nothing()
    assert (await bob.get(f"/api/ciphers/{mine['id']}")).status_code == 200
    assert (await alice.get(f"/api/ciphers/{theirs['id']}")).status_code == 200


async def test_folder_of_another_user_cannot_be_used(alice: BitwardenClient, bob: BitwardenClient, events) -> None:
    folder = (await alice.post("/api/folders", {"name": alice.encrypt("A")})).json()
    item = await create(bob, "B")
    await events.exactly(2)
    assert (await bob.post("/api/ciphers", bob.login_item("x", folder_id=folder["id"]))).status_code == 400
    assert (await bob.put(f"/api/ciphers/{item['id']}/partial", {"folderId": folder["id"]})).status_code == 400
    assert (await bob.put("/api/ciphers/move", {"ids": [item["id"]], "folderId": folder["id"]})).status_code == 400
    await events.nothing()


async def test_bad_cipher_input_is_400(alice: BitwardenClient, events) -> None:
    good = alice.login_item("x")
    for body in (
        {**good, "type": 42},
        {**good, "type": "1"},
        {**good, "name": None},
        {**good, "name": ["list"]},
        {**good, "login": None},
        {**good, "login": "text"},
        {**good, "favorite": "yes"},
        {**good, "folderId": "not-a-uuid"},
        {**good, "organizationId": str(uuid.uuid4())},
        {**good, "fields": {"a": 1}},
        [good],
    ):
        reply = await alice.post("/api/ciphers", body)
        assert reply.status_code == 400, body
        assert reply.json()["object"] == "error" and reply.json()["message"]
    for ids in (None, [], ["nope"], "x"):
        assert (await alice.put("/api/ciphers/delete", {"ids": ids})).status_code == 400
    await events.nothing()


async def test_oversized_body_is_413(database_url: str, new_client) -> None:
    async with running_api(database_url, max_body_size=64 * 1024) as url:
        client = new_client()
        client.base_url = url
        client.http.base_url = url
        await client.register("big@example.com", "pw")
        await client.login()
        reply = await client.post("/api/ciphers", {**client.login_item("big"), "notes": "x" * 100_000})
        assert reply.status_code == 413
        assert reply.json()["object"] == "error"
        assert (await client.get("/api/ciphers")).json()["data"] == []
