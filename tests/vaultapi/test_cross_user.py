"""Bob holding Alice's ids: every route that takes an id, in its path or its body.

An id of hers in a path is as unknown to him as a made-up one (404); one of her folders named in
his item's body is an invalid folder (400). Either way her vault, down to its database rows, and
her devices' event stream do not change, and his own vault keeps nothing of a refused request.
"""

from __future__ import annotations

from typing import Any

from tests.support.bwclient import BitwardenClient
from tests.support.vaultstate import assert_error_shape, user_rows, vault_bytes
from tests.vaultapi.conftest import user_id_of


async def _vault(client: BitwardenClient, name: str) -> dict[str, str]:
    """A folder, an item in it (a favorite) and an item in the trash."""
    folder = (await client.post("/api/folders", {"name": client.encrypt(name)})).json()["id"]
    item = {**client.login_item(name, folder_id=folder), "favorite": True}
    cipher = (await client.post("/api/ciphers", item)).json()["id"]
    trashed = (await client.post("/api/ciphers", client.login_item(f"{name} old"))).json()["id"]
    assert (await client.put(f"/api/ciphers/{trashed}/delete")).status_code == 200
    return {"folder": folder, "cipher": cipher, "trashed": trashed}


async def test_bob_cannot_reach_alice_through_any_id(alice: BitwardenClient, bob: BitwardenClient,
                                                     events, db) -> None:
    a, b = await _vault(alice, "alice's"), await _vault(bob, "bob's")
    alice_id = await user_id_of(alice)
    alice_before = (await vault_bytes(alice), await user_rows(db, alice_id))
    bob_before = await vault_bytes(bob)
    await events.exactly(8)

    item = bob.login_item("mine now")
    in_her_folder = bob.login_item("mine", folder_id=a["folder"])
    theirs, mine = a["cipher"], b["cipher"]
    not_found: list[tuple[str, str, Any]] = [
        ("GET", f"/api/ciphers/{theirs}", None),
        ("GET", f"/api/ciphers/{theirs}/details", None),
        ("PUT", f"/api/ciphers/{theirs}", item),
        ("POST", f"/api/ciphers/{theirs}", item),
        ("PUT", f"/api/ciphers/{theirs}", bob.login_item("mine", folder_id=b["folder"])),
        ("PUT", f"/api/ciphers/{theirs}/partial", {"folderId": None, "favorite": False}),
        ("POST", f"/api/ciphers/{theirs}/partial", {"folderId": b["folder"], "favorite": True}),
        ("PUT", f"/api/ciphers/{theirs}/delete", None),
        ("PUT", f"/api/ciphers/{a['trashed']}/restore", None),
        ("DELETE", f"/api/ciphers/{theirs}", None),
        ("POST", f"/api/ciphers/{a['trashed']}/delete", None),
        ("GET", f"/api/ciphers/{a['folder']}", None),
        ("GET", f"/api/folders/{theirs}", None),
    ]
    for ids in ([theirs], [mine, theirs], [theirs, theirs]):
        not_found += [
            ("PUT", "/api/ciphers/move", {"ids": ids, "folderId": b["folder"]}),
            ("POST", "/api/ciphers/move", {"ids": ids, "folderId": None}),
            ("PUT", "/api/ciphers/delete", {"ids": ids}),
            ("POST", "/api/ciphers/delete", {"ids": ids}),
            ("DELETE", "/api/ciphers", {"ids": ids}),
        ]
    for ids in ([a["trashed"]], [b["trashed"], a["trashed"]]):
        not_found.append(("PUT", "/api/ciphers/restore", {"ids": ids}))
    for method in ("GET", "PUT", "POST", "DELETE"):
        not_found.append((method, f"/api/folders/{a['folder']}", {"name": bob.encrypt("renamed")}))
    not_found.append(("POST", f"/api/folders/{a['folder']}/delete", None))
    invalid_folder: list[tuple[str, str, Any]] = [
        ("POST", "/api/ciphers", in_her_folder),
        ("POST", "/api/ciphers/create", {"cipher": in_her_folder, "collectionIds": []}),
        ("PUT", f"/api/ciphers/{mine}", in_her_folder),
        ("POST", f"/api/ciphers/{mine}", in_her_folder),
        ("PUT", f"/api/ciphers/{mine}/partial", {"folderId": a["folder"], "favorite": True}),
        ("POST", f"/api/ciphers/{mine}/partial", {"folderId": a["folder"], "favorite": True}),
        ("PUT", "/api/ciphers/move", {"ids": [mine], "folderId": a["folder"]}),
        ("POST", "/api/ciphers/move", {"ids": [mine], "folderId": a["folder"]}),
    ]
    for expected, requests in ((404, not_found), (400, invalid_folder)):
        for method, path, body in requests:
            reply = await bob.call(method, path, body)
            assert reply.status_code == expected, (method, path, reply.status_code, reply.text)
            assert_error_shape(reply)

    await events.nothing()
    assert await vault_bytes(bob) == bob_before
    assert (await vault_bytes(alice), await user_rows(db, alice_id)) == alice_before


async def test_import_naming_alice_folder_makes_bob_a_folder_of_his_own(alice: BitwardenClient, bob: BitwardenClient,
                                                                        events, db) -> None:
    a = await _vault(alice, "alice's")
    alice_id, bob_id = await user_id_of(alice), await user_id_of(bob)
    alice_before = (await vault_bytes(alice), await user_rows(db, alice_id))
    await events.exactly(4)
    reply = await bob.post("/api/ciphers/import", {
        "ciphers": [bob.login_item("imported")],
        "folders": [{"id": a["folder"], "name": bob.encrypt("Bob's copy")}],
        "folderRelationships": [{"key": 0, "value": 0}],
    })
    assert reply.status_code == 200, reply.text
    [event] = await events.exactly(1)
    assert (int(event.type), event.user_id, event.device_identifier) == (5, bob_id, bob.device)
    sync = (await bob.get("/api/sync")).json()
    [folder] = sync["folders"]
    assert folder["id"] != a["folder"] and bob.decrypt(folder["name"]) == "Bob's copy"
    assert [c["folderId"] for c in sync["ciphers"]] == [folder["id"]]
    assert (await vault_bytes(alice), await user_rows(db, alice_id)) == alice_before
