"""Folders: CRUD, the event of each write, and other users' folders looking nonexistent."""

from __future__ import annotations

import uuid

from tests.support.bwclient import BitwardenClient
from tests.vaultapi.conftest import assert_event, user_id_of


async def test_folder_lifecycle_publishes_create_update_delete(alice: BitwardenClient, events) -> None:
    me = await user_id_of(alice)
    created = await alice.post("/api/folders", {"name": alice.encrypt("Work")})
    assert created.status_code == 200
    folder = created.json()
    assert folder["object"] == "folder" and alice.decrypt(folder["name"]) == "Work"
    assert_event(await events.next(), 7, me, folder["id"], alice.device)

    renamed = await alice.put(f"/api/folders/{folder['id']}", {"name": alice.encrypt("Job")})
    assert alice.decrypt(renamed.json()["name"]) == "Job"
    assert renamed.json()["revisionDate"] > folder["revisionDate"]
    assert_event(await events.next(), 8, me, folder["id"], alice.device)
    await alice.post(f"/api/folders/{folder['id']}", {"name": alice.encrypt("Job 2")})
    assert_event(await events.next(), 8, me, folder["id"], alice.device)

    fetched = await alice.get(f"/api/folders/{folder['id']}")
    assert alice.decrypt(fetched.json()["name"]) == "Job 2"
    listed = (await alice.get("/api/folders")).json()
    assert listed["object"] == "list" and [f["id"] for f in listed["data"]] == [folder["id"]]

    assert (await alice.delete(f"/api/folders/{folder['id']}")).status_code == 200
    assert_event(await events.next(), 3, me, folder["id"], alice.device)
    await events.nothing()
    assert (await alice.get(f"/api/folders/{folder['id']}")).status_code == 404


async def test_delete_folder_by_post_makes_its_items_folderless(alice: BitwardenClient, events) -> None:
    me = await user_id_of(alice)
    folder = (await alice.post("/api/folders", {"name": alice.encrypt("Old")})).json()
    item = (await alice.post("/api/ciphers", alice.login_item("bank", folder_id=folder["id"]))).json()
    assert item["folderId"] == folder["id"]
    await events.exactly(2)
    assert (await alice.post(f"/api/folders/{folder['id']}/delete")).status_code == 200
    received = await events.exactly(2)
    assert {(int(e.type), e.item_id, e.device_identifier) for e in received} == {
        (3, folder["id"], alice.device), (0, item["id"], alice.device)}
    assert all(e.user_id == me for e in received)
    assert (await alice.get(f"/api/ciphers/{item['id']}")).json()["folderId"] is None


async def test_other_users_folder_is_404_and_unchanged(alice: BitwardenClient, bob: BitwardenClient, events) -> None:
    folder = (await alice.post("/api/folders", {"name": alice.encrypt("Mine")})).json()
    await events.next()
    path = f"/api/folders/{folder['id']}"
    for reply in (
        await bob.get(path),
        await bob.put(path, {"name": bob.encrypt("Stolen")}),
        await bob.post(path, {"name": bob.encrypt("Stolen")}),
        await bob.delete(path),
        await bob.post(f"{path}/delete"),
        await bob.get(f"/api/folders/{uuid.uuid4()}"),
    ):
        assert reply.status_code == 404 and reply.json()["object"] == "error"
    await events.nothing()
    assert alice.decrypt((await alice.get(path)).json()["name"]) == "Mine"
    assert (await bob.get("/api/folders")).json()["data"] == []


async def test_folder_bad_input_is_400(alice: BitwardenClient, events) -> None:
    assert (await alice.post("/api/folders", {})).status_code == 400
    assert (await alice.post("/api/folders", {"name": 5})).status_code == 400
    assert (await alice.post("/api/folders", {"name": ""})).status_code == 400
    assert (await alice.post("/api/folders", ["x"])).status_code == 400
    raw = await alice.post("/api/folders", content=b"{", headers={"content-type": "application/json"})
    assert raw.status_code == 400 and raw.json()["object"] == "error"
    assert (await alice.get("/api/folders/not-a-uuid")).status_code == 404
    await events.nothing()


async def test_folders_need_a_valid_token(api: str, alice: BitwardenClient) -> None:
    reply = await alice.http.get("/api/folders")
    assert reply.status_code == 401 and reply.json()["object"] == "error"
    forged = await alice.http.get("/api/folders", headers={"Authorization": "Bearer abc.def.ghi"})
    assert forged.status_code == 401


async def test_values_postgres_cannot_hold_are_400(alice: BitwardenClient, events) -> None:
    assert (await alice.post("/api/folders", {"name": "nul\u0000byte"})).status_code == 400
    item = {**alice.login_item("x"), "notes": "nul\u0000byte"}
    assert (await alice.post("/api/ciphers", item)).status_code == 400
    alice.device_type = 99_999_999
    overflow = await alice.request_token()
    assert overflow.status_code == 400
    await events.nothing()
