"""Attachments: the v2 flow and the legacy upload, the download URL any replica honours, the
limits refused before anything is stored, and the item's event on every change."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import asyncpg
import httpx
import pytest

from tests.support.bwclient import BitwardenClient
from tests.support.organizations import ADMIN, Organization, grant
from tests.vaultapi.conftest import assert_event, running_api, s3_settings, user_id_of
from tests.vaultapi.test_ciphers import create
from vaultapi import housekeeping
from vaultapi.database import open_pool
from vaultapi.storage.postgres import PostgresStore


def announcement(client: BitwardenClient, size: int, **extra: Any) -> dict[str, Any]:
    return {"key": client.encrypt("attachment key"), "fileName": client.encrypt("photo.jpg"), "fileSize": size,
            "adminRequest": False, **extra}


async def upload(client: BitwardenClient, cipher_id: str, attachment_id: str, data: bytes) -> httpx.Response:
    return await client.post(f"/api/ciphers/{cipher_id}/attachment/{attachment_id}",
                              files={"data": (client.encrypt("photo.jpg"), data, "application/octet-stream")})


async def add(client: BitwardenClient, cipher_id: str, data: bytes) -> str:
    announced = await client.post(f"/api/ciphers/{cipher_id}/attachment/v2", announcement(client, len(data)))
    assert announced.status_code == 200, announced.text
    attachment_id = announced.json()["attachmentId"]
    uploaded = await upload(client, cipher_id, attachment_id, data)
    assert uploaded.status_code == 200, uploaded.text
    return attachment_id


async def download(client: BitwardenClient, cipher_id: str, attachment_id: str, base: str | None = None) -> bytes:
    reply = await client.get(f"/api/ciphers/{cipher_id}/attachment/{attachment_id}")
    assert reply.status_code == 200, reply.text
    url = reply.json()["url"]
    if base is not None:
        url = base + url[url.index("/attachments/"):]
    else:
        url = str(client.http.base_url).rstrip("/") + url[url.index("/attachments/"):]
    # as the clients fetch it: no access token
    async with httpx.AsyncClient() as anonymous:
        fetched = await anonymous.get(url)
    assert fetched.status_code == 200, fetched.text
    return fetched.content


async def test_v2_upload_download_and_delete_with_the_items_events(alice: BitwardenClient, events) -> None:
    me = await user_id_of(alice)
    item = await create(alice, "With a file")
    await events.next()
    data = os.urandom(3 * 1024 * 1024 + 5)
    announced = await alice.post(f"/api/ciphers/{item['id']}/attachment/v2", announcement(alice, len(data)))
    body = announced.json()
    assert body["object"] == "attachment-fileUpload" and body["fileUploadType"] == 0
    assert body["cipherResponse"]["attachments"][0]["id"] == body["attachmentId"]
    assert_event(await events.next(), 0, me, item["id"], alice.device)
    assert (await upload(alice, item["id"], body["attachmentId"], data)).status_code == 200
    assert_event(await events.next(), 0, me, item["id"], alice.device)

    shown = (await alice.get(f"/api/ciphers/{item['id']}")).json()
    [attachment] = shown["attachments"]
    assert attachment["id"] == body["attachmentId"] and attachment["size"] == str(len(data))
    assert alice.decrypt(attachment["fileName"]) == "photo.jpg"
    assert shown["revisionDate"] > item["revisionDate"]
    synced = (await alice.get("/api/sync")).json()
    assert synced["ciphers"][0]["attachments"] == shown["attachments"]
    assert await download(alice, item["id"], body["attachmentId"]) == data

    deleted = await alice.delete(f"/api/ciphers/{item['id']}/attachment/{body['attachmentId']}")
    assert deleted.status_code == 200 and deleted.json()["cipher"]["attachments"] is None
    assert_event(await events.next(), 0, me, item["id"], alice.device)
    again = await alice.get(f"/api/ciphers/{item['id']}/attachment/{body['attachmentId']}")
    assert again.status_code == 404


async def test_legacy_upload(alice: BitwardenClient) -> None:
    item = await create(alice, "Legacy")
    data = os.urandom(70_000)
    key = alice.encrypt("attachment key")
    reply = await alice.post(f"/api/ciphers/{item['id']}/attachment", data={"key": key},
                             files={"data": (alice.encrypt("doc.pdf"), data, "application/octet-stream")})
    assert reply.status_code == 200, reply.text
    [attachment] = reply.json()["attachments"]
    assert attachment["key"] == key and alice.decrypt(attachment["fileName"]) == "doc.pdf"
    assert await download(alice, item["id"], attachment["id"]) == data


async def test_a_download_url_works_on_another_replica_and_only_for_its_file(
        alice: BitwardenClient, database_url: str) -> None:
    item = await create(alice, "Two replicas")
    data = os.urandom(10_000)
    attachment_id = await add(alice, item["id"], data)
    async with running_api(database_url) as other:
        assert await download(alice, item["id"], attachment_id, base=other) == data
        url = (await alice.get(f"/api/ciphers/{item['id']}/attachment/{attachment_id}")).json()["url"]
        token = url.split("?token=", 1)[1]
        async with httpx.AsyncClient(base_url=other) as anonymous:
            other_file = await anonymous.get(f"/attachments/{item['id']}/{'0' * 32}?token={token}")
            no_token = await anonymous.get(f"/attachments/{item['id']}/{attachment_id}")
            access_token = await anonymous.get(f"/attachments/{item['id']}/{attachment_id}?token={alice.access_token}")
    assert (other_file.status_code, no_token.status_code, access_token.status_code) == (404, 404, 404)


async def test_another_users_item_is_not_found(alice: BitwardenClient, bob: BitwardenClient) -> None:
    item = await create(alice, "Mine")
    attachment_id = await add(alice, item["id"], b"secret bytes")
    assert (await bob.post(f"/api/ciphers/{item['id']}/attachment/v2", announcement(bob, 10))).status_code == 404
    assert (await bob.get(f"/api/ciphers/{item['id']}/attachment/{attachment_id}")).status_code == 404
    assert (await bob.delete(f"/api/ciphers/{item['id']}/attachment/{attachment_id}")).status_code == 404
    assert (await upload(bob, item["id"], attachment_id, b"x")).status_code == 404


async def test_a_file_not_the_size_announced_is_refused_and_not_kept(alice: BitwardenClient, db) -> None:
    item = await create(alice, "Sizes")
    announced = (await alice.post(f"/api/ciphers/{item['id']}/attachment/v2", announcement(alice, 1000))).json()
    for data in (os.urandom(999), os.urandom(1001), os.urandom(200_000)):
        reply = await upload(alice, item["id"], announced["attachmentId"], data)
        assert reply.status_code in (400, 413), reply.text
        if reply.status_code == 413:  # refused before its end: the connection is not kept for another request
            assert reply.headers["connection"] == "close"
    assert await db.fetchval("SELECT count(*) FROM stored_files") == 0
    assert (await upload(alice, item["id"], announced["attachmentId"], os.urandom(1000))).status_code == 200
    assert (await upload(alice, item["id"], announced["attachmentId"], os.urandom(1000))).status_code == 404


async def test_limits_are_refused_before_anything_is_stored(database_url: str, new_client, db) -> None:
    async with running_api(database_url, max_file_size=64, user_attachment_limit=100) as api:
        client = BitwardenClient(api)
        await client.register("limits@example.com", "pw pw pw pw pw pw")
        await client.login()
        item = await create(client, "Limited")
        too_big = await client.post(f"/api/ciphers/{item['id']}/attachment/v2", announcement(client, 65 * 1024))
        assert too_big.status_code == 400 and "Max file size" in too_big.json()["message"]
        await add(client, item["id"], os.urandom(60 * 1024))
        over = await client.post(f"/api/ciphers/{item['id']}/attachment/v2", announcement(client, 50 * 1024))
        assert over.status_code == 400 and "storage" in over.json()["message"]
        legacy = await client.post(f"/api/ciphers/{item['id']}/attachment", data={"key": client.encrypt("k")},
                                   files={"data": (client.encrypt("f"), os.urandom(50 * 1024), "x/y")})
        assert legacy.status_code == 413
        await client.aclose()
    assert await db.fetchval("SELECT count(*) FROM stored_files") == 1
    assert await db.fetchval("SELECT count(*) FROM attachments") == 1


async def test_an_interrupted_upload_leaves_nothing(alice: BitwardenClient, api: str, db) -> None:
    item = await create(alice, "Cut")
    announced = (await alice.post(f"/api/ciphers/{item['id']}/attachment/v2",
                                  announcement(alice, 5 * 1024 * 1024))).json()
    boundary = "cutcutcut"

    async def body():
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"data\"; filename=\"x\"\r\n\r\n").encode()
        yield os.urandom(3 * 1024 * 1024)
        raise ConnectionResetError("gone")

    with pytest.raises(Exception):
        await alice.http.post(f"/api/ciphers/{item['id']}/attachment/{announced['attachmentId']}",
                              content=body(), headers={**alice.auth_headers,
                                                       "Content-Type": f"multipart/form-data; boundary={boundary}",
                                                       "Content-Length": str(5 * 1024 * 1024 + 200)})
    for _ in range(50):
        if await db.fetchval("SELECT count(*) FROM stored_files") == 0:
            break
        await asyncio.sleep(0.1)
    assert await db.fetchval("SELECT count(*) FROM stored_files") == 0
    assert await db.fetchval("SELECT count(*) FROM stored_file_chunks") == 0


async def test_a_deleted_item_releases_its_files_and_the_sweep_removes_them(
        alice: BitwardenClient, database_url: str, db) -> None:
    item = await create(alice, "Gone soon")
    await add(alice, item["id"], os.urandom(5000))
    assert (await alice.delete(f"/api/ciphers/{item['id']}")).status_code == 200
    assert await db.fetchval("SELECT count(*) FROM released_files") == 1
    pool = await open_pool(database_url)
    try:
        swept = await housekeeping.sweep(pool, PostgresStore(pool))
    finally:
        await pool.close()
    assert swept is not None and swept.files == 1
    assert await db.fetchval("SELECT count(*) FROM stored_files") == 0
    assert await db.fetchval("SELECT count(*) FROM released_files") == 0


async def test_a_read_only_member_may_download_but_not_add(alice: BitwardenClient, bob: BitwardenClient) -> None:
    organization = await Organization.create(alice)
    await organization.add(bob, collections=[grant(organization.default_collection, read_only=True)])
    cipher_id = (await organization.item("Shared", [organization.default_collection]))["id"]
    attachment_id = await add(alice, cipher_id, b"org file")
    await bob.sync()
    assert await download(bob, cipher_id, attachment_id) == b"org file"
    refused = await bob.post(f"/api/ciphers/{cipher_id}/attachment/v2", announcement(bob, 10))
    assert refused.status_code == 400
    assert (await bob.delete(f"/api/ciphers/{cipher_id}/attachment/{attachment_id}")).status_code == 400
    assert (await bob.delete(f"/api/ciphers/{cipher_id}/attachment/{attachment_id}/admin")).status_code == 400
    # the owner, from the admin console
    removed = await alice.delete(f"/api/ciphers/{cipher_id}/attachment/{attachment_id}/admin")
    assert removed.status_code == 200 and removed.json()["cipher"]["attachments"] is None


async def test_the_same_flows_with_the_s3_store(database_url: str, s3, db) -> None:
    settings = s3_settings(s3)
    async with running_api(database_url, **settings) as api:
        client = BitwardenClient(api)
        try:
            await client.register("s3@example.com", "pw pw pw pw pw pw")
            await client.login()
            item = await create(client, "In a bucket")
            data = os.urandom(6 * 1024 * 1024 + 3)  # more than one part
            attachment_id = await add(client, item["id"], data)
            legacy = await client.post(f"/api/ciphers/{item['id']}/attachment", data={"key": client.encrypt("k")},
                                       files={"data": (client.encrypt("small"), b"small file", "x/y")})
            assert legacy.status_code == 200, legacy.text
            small = [a for a in legacy.json()["attachments"] if a["id"] != attachment_id][0]
            assert await download(client, item["id"], attachment_id) == data
            assert await download(client, item["id"], small["id"]) == b"small file"
            assert (await client.delete(f"/api/ciphers/{item['id']}/attachment/{attachment_id}")).status_code == 200
        finally:
            await client.aclose()
    # nothing went to PostgreSQL's store
    assert await db.fetchval("SELECT count(*) FROM stored_files") == 0
    assert await db.fetchval("SELECT count(*) FROM released_files") == 1


async def test_sharing_an_item_brings_its_attachments_keys(alice: BitwardenClient, bob: BitwardenClient) -> None:
    organization = await Organization.create(alice)
    await organization.add(bob, collections=[grant(organization.default_collection)])
    personal = await create(alice, "Passport scan")
    attachment_id = await add(alice, personal["id"], b"scan bytes")
    shared = {**alice.org_item(organization.id, "Passport scan"), "id": personal["id"]}
    body = {"cipher": shared, "collectionIds": [organization.default_collection]}
    without = await alice.put(f"/api/ciphers/{personal['id']}/share", body)
    assert without.status_code == 400 and "attachments2" in without.text
    org_key = alice.org_encrypt(organization.id, "attachment key under the organization's key")
    name = alice.org_encrypt(organization.id, "photo.jpg")
    body["cipher"] = {**shared, "attachments2": {attachment_id: {"fileName": name, "key": org_key}}}
    moved = await alice.put(f"/api/ciphers/{personal['id']}/share", body)
    assert moved.status_code == 200, moved.text
    [attachment] = moved.json()["attachments"]
    assert (attachment["key"], attachment["fileName"]) == (org_key, name)
    await bob.sync()
    assert await download(bob, personal["id"], attachment_id) == b"scan bytes"


async def test_renew_gives_a_pending_uploads_url_again(alice: BitwardenClient, bob: BitwardenClient) -> None:
    item = await create(alice, "Pending")
    announced = (await alice.post(f"/api/ciphers/{item['id']}/attachment/v2", announcement(alice, 5))).json()
    renew = f"/api/ciphers/{item['id']}/attachment/{announced['attachmentId']}/renew"
    renewed = await alice.get(renew)
    assert renewed.status_code == 200, renewed.text
    body = renewed.json()
    assert (body["url"], body["fileUploadType"], body["object"]) == (announced["url"], 0, "attachment-fileUpload")
    assert body["cipherResponse"] is None
    assert (await bob.get(renew)).status_code == 404
    assert (await upload(alice, item["id"], announced["attachmentId"], b"12345")).status_code == 200
    # uploaded: nothing left to renew
    assert (await alice.get(renew)).status_code == 404
    assert (await alice.get(f"/api/ciphers/{item['id']}/attachment/{'0' * 32}/renew")).status_code == 404


async def test_the_admin_consoles_upload_is_for_those_who_edit_any_collection(
        alice: BitwardenClient, bob: BitwardenClient, carol: BitwardenClient) -> None:
    organization = await Organization.create(alice)
    await organization.add(bob, collections=[grant(organization.default_collection)])  # edits, not an admin
    await organization.add(carol, member_type=ADMIN)
    cipher_id = (await organization.item("Shared", [organization.default_collection]))["id"]

    async def admin_upload(client: BitwardenClient, target: str, data: bytes) -> httpx.Response:
        return await client.post(f"/api/ciphers/{target}/attachment-admin",
                                 data={"key": client.org_encrypt(organization.id, "attachment key")},
                                 files={"data": (client.org_encrypt(organization.id, "plan.pdf"), data, "x/y")})

    await carol.sync()
    added = await admin_upload(carol, cipher_id, b"the plan")
    assert added.status_code == 200, added.text
    assert added.json()["object"] == "cipherMini"
    [attachment] = added.json()["attachments"]
    await bob.sync()
    assert await download(bob, cipher_id, attachment["id"]) == b"the plan"
    # a member who is no admin, and a personal item, are as unknown as a missing item
    assert (await admin_upload(bob, cipher_id, b"x")).status_code == 404
    personal = await create(alice, "Mine")
    assert (await admin_upload(alice, personal["id"], b"x")).status_code == 404
    not_a_form = await carol.post(f"/api/ciphers/{cipher_id}/attachment-admin", {"data": "x"})
    assert not_a_form.status_code == 415
    assert len((await alice.get(f"/api/ciphers/{cipher_id}")).json()["attachments"]) == 1
    # and the admin console removes it
    removed = await carol.delete(f"/api/ciphers/{cipher_id}/attachment/{attachment['id']}/admin")
    assert removed.status_code == 200 and removed.json()["cipher"]["attachments"] is None


async def test_an_old_attachment_is_re_encrypted_for_the_organization_then_shared(
        alice: BitwardenClient, bob: BitwardenClient, carol: BitwardenClient, db) -> None:
    organization = await Organization.create(alice)
    await organization.add(bob, collections=[grant(organization.default_collection)])
    personal = await create(alice, "Old scan")
    # an old attachment: no key of its own, encrypted with the user's key
    old = await alice.post(f"/api/ciphers/{personal['id']}/attachment",
                           files={"data": (alice.encrypt("scan.png"), b"under the user's key", "x/y")})
    assert old.status_code == 200, old.text
    [attachment] = old.json()["attachments"]
    assert attachment["key"] is None
    path = f"/api/ciphers/{personal['id']}/attachment/{attachment['id']}/share"
    org_key = alice.org_encrypt(organization.id, "the attachment's new key")
    new_name = alice.org_encrypt(organization.id, "scan.png")

    async def reupload(client: BitwardenClient, data: bytes, organization_id: str = organization.id,
                       target: str = path, key: str | None = org_key) -> httpx.Response:
        return await client.post(f"{target}?organizationId={organization_id}", data={"key": key} if key else {},
                                 files={"data": (new_name, data, "application/octet-stream")})

    # the item's owner only, a member of the organization only, an attachment of the item only
    assert (await reupload(bob, b"x")).status_code == 404
    other = await carol.create_organization("Elsewhere")
    assert (await reupload(alice, b"x", organization_id=other["id"])).status_code == 404
    assert (await reupload(alice, b"x", target=path.replace(attachment["id"], "0" * 32))).status_code == 404
    assert (await reupload(alice, b"x", organization_id="not-an-id")).status_code == 400
    assert (await reupload(alice, b"x", key=None)).status_code == 400
    assert await db.fetchval("SELECT count(*) FROM attachment_shares") == 0

    # held, twice (the second replaces the first, whose file is released); the item is unchanged
    assert (await reupload(alice, b"first try")).status_code == 200
    held = await db.fetchval("SELECT file_key FROM attachment_shares")
    assert (await reupload(alice, b"under the attachment's new key")).status_code == 200
    assert await db.fetchval("SELECT count(*) FROM released_files WHERE key = $1", held) == 1
    assert await download(alice, personal["id"], attachment["id"]) == b"under the user's key"
    assert (await alice.get(f"/api/ciphers/{personal['id']}")).json()["attachments"][0]["key"] is None

    shared = {**alice.org_item(organization.id, "Old scan"), "id": personal["id"],
              "attachments2": {attachment["id"]: {"fileName": new_name, "key": None}}}
    moved = await alice.put(f"/api/ciphers/{personal['id']}/share",
                            {"cipher": shared, "collectionIds": [organization.default_collection]})
    assert moved.status_code == 200, moved.text
    [now] = moved.json()["attachments"]
    assert (now["id"], now["key"], now["fileName"], now["size"]) == (
        attachment["id"], org_key, new_name, str(len(b"under the attachment's new key")))
    await bob.sync()
    assert await download(bob, personal["id"], attachment["id"]) == b"under the attachment's new key"
    # the old file is released, the held one is the attachment's now
    assert await db.fetchval("SELECT count(*) FROM attachment_shares") == 0
    assert await db.fetchval("SELECT count(*) FROM released_files WHERE key = $1",
                             f"attachments/{personal['id']}/{attachment['id']}") == 1
    # shared already: nothing more to hold for it
    assert (await reupload(alice, b"x")).status_code == 404


async def test_an_old_attachment_without_its_file_for_the_organization_keeps_the_item_personal(
        alice: BitwardenClient) -> None:
    organization = await Organization.create(alice)
    personal = await create(alice, "Old scan")
    old = await alice.post(f"/api/ciphers/{personal['id']}/attachment",
                           files={"data": (alice.encrypt("scan.png"), b"old", "x/y")})
    [attachment] = old.json()["attachments"]
    shared = {**alice.org_item(organization.id, "Old scan"), "id": personal["id"],
              "attachments2": {attachment["id"]: {"fileName": alice.org_encrypt(organization.id, "n"), "key": None}}}
    refused = await alice.put(f"/api/ciphers/{personal['id']}/share",
                              {"cipher": shared, "collectionIds": [organization.default_collection]})
    assert refused.status_code == 400 and "attachments2" in refused.text
    assert (await alice.get(f"/api/ciphers/{personal['id']}")).json()["organizationId"] is None


async def test_a_file_held_for_a_share_that_never_came_is_swept(alice: BitwardenClient, database_url: str,
                                                                db) -> None:
    organization = await Organization.create(alice)
    personal = await create(alice, "Old scan")
    old = await alice.post(f"/api/ciphers/{personal['id']}/attachment",
                           files={"data": (alice.encrypt("scan.png"), b"old", "x/y")})
    [attachment] = old.json()["attachments"]
    held = await alice.post(f"/api/ciphers/{personal['id']}/attachment/{attachment['id']}/share"
                            f"?organizationId={organization.id}",
                            data={"key": alice.org_encrypt(organization.id, "k")},
                            files={"data": (alice.org_encrypt(organization.id, "n"), b"new", "x/y")})
    assert held.status_code == 200, held.text
    file_key = await db.fetchval("SELECT file_key FROM attachment_shares")
    await db.execute("UPDATE attachment_shares SET created_at = now() - interval '2 days'")
    pool = await open_pool(database_url)
    try:
        await housekeeping.sweep(pool, PostgresStore(pool))
    finally:
        await pool.close()
    assert await db.fetchval("SELECT count(*) FROM attachment_shares") == 0
    assert await db.fetchval("SELECT count(*) FROM stored_files WHERE key = $1", file_key) == 0
    # the attachment itself is untouched
    assert await download(alice, personal["id"], attachment["id"]) == b"old"
