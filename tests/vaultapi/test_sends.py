"""Sends: the owner's routes and their events, access by link with every option the clients
offer, an exact access count under concurrent access, file Sends through both stores, and the
scheduled deletion done once."""

from __future__ import annotations

import asyncio
import base64
import os
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg
import httpx
import pytest

from tests.support.bwclient import BitwardenClient
from tests.vaultapi.conftest import assert_event, user_id_of
from vaultapi import housekeeping
from vaultapi.database import open_pool
from vaultapi.storage.postgres import PostgresStore


def when(**delta: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(**delta)).isoformat().replace("+00:00", "Z")


def text_send(client: BitwardenClient, text: str = "the secret", **extra: Any) -> dict[str, Any]:
    return {"type": 0, "name": client.encrypt("Note for Bob"), "notes": None, "key": client.encrypt("send key"),
            "maxAccessCount": None, "expirationDate": None, "deletionDate": when(days=7),
            "text": {"text": client.encrypt(text), "hidden": False}, "file": None, "password": None,
            "disabled": False, "hideEmail": False, **extra}


async def anonymous_access(api: str, access_id: str, password: str | None = None) -> httpx.Response:
    async with httpx.AsyncClient(base_url=api) as http:
        return await http.post(f"/api/sends/access/{access_id}", json={"password": password} if password else {})


async def test_text_send_lifecycle_and_its_events(alice: BitwardenClient, api: str, events) -> None:
    me = await user_id_of(alice)
    created = await alice.post("/api/sends", text_send(alice))
    assert created.status_code == 200, created.text
    send = created.json()
    assert send["object"] == "send" and send["accessCount"] == 0 and send["authType"] == 2
    assert base64.urlsafe_b64decode(send["accessId"] + "==") and len(send["accessId"]) == 22
    assert_event(await events.next(), 12, me, send["id"], alice.device)

    listed = (await alice.get("/api/sends")).json()["data"]
    assert [s["id"] for s in listed] == [send["id"]]
    assert (await alice.get("/api/sync")).json()["sends"][0]["id"] == send["id"]
    assert (await alice.get(f"/api/sends/{send['id']}")).json()["key"] == send["key"]

    opened = await anonymous_access(api, send["accessId"])
    assert opened.status_code == 200, opened.text
    body = opened.json()
    assert alice.decrypt(body["text"]["text"]) == "the secret" and body["creatorIdentifier"] == "alice@example.com"
    assert "notes" not in body
    assert_event(await events.next(), 13, me, send["id"], None)  # the count moved

    edited = await alice.put(f"/api/sends/{send['id']}", text_send(alice, "changed", hideEmail=True,
                                                                   password="client-hash"))
    assert edited.status_code == 200 and edited.json()["authType"] == 1 and edited.json()["password"]
    assert_event(await events.next(), 13, me, send["id"], alice.device)
    assert (await anonymous_access(api, send["accessId"])).status_code == 401
    assert (await anonymous_access(api, send["accessId"], "wrong")).status_code == 400
    right = await anonymous_access(api, send["accessId"], "client-hash")
    assert right.status_code == 200 and right.json()["creatorIdentifier"] is None
    await events.next()
    removed = await alice.put(f"/api/sends/{send['id']}/remove-password")
    assert removed.status_code == 200 and removed.json()["password"] is None
    await events.next()
    assert (await anonymous_access(api, send["accessId"])).status_code == 200
    await events.next()

    assert (await alice.delete(f"/api/sends/{send['id']}")).status_code == 200
    assert_event(await events.next(), 14, me, send["id"], alice.device)
    assert (await anonymous_access(api, send["accessId"])).status_code == 404


async def test_disabled_expired_and_unknown_sends_are_not_found(alice: BitwardenClient, api: str, db) -> None:
    disabled = (await alice.post("/api/sends", text_send(alice, disabled=True))).json()
    expired = (await alice.post("/api/sends", text_send(alice, expirationDate=when(minutes=5)))).json()
    await db.execute("UPDATE sends SET expiration_date = now() - interval '1 second' WHERE id = $1",
                     __import__("uuid").UUID(expired["id"]))
    for access_id in (disabled["accessId"], expired["accessId"], "AAAAAAAAAAAAAAAAAAAAAA", "not-an-id"):
        assert (await anonymous_access(api, access_id)).status_code == 404


async def test_dates_are_checked(alice: BitwardenClient) -> None:
    for extra in ({"deletionDate": when(minutes=-5)}, {"deletionDate": when(days=40)},
                  {"expirationDate": when(days=8)}, {"expirationDate": when(seconds=10)},
                  {"deletionDate": None}, {"maxAccessCount": 0}, {"emails": "x@example.com"}):
        reply = await alice.post("/api/sends", text_send(alice, **extra))
        assert reply.status_code == 400, (extra, reply.text)


async def test_the_access_count_never_passes_its_maximum(alice: BitwardenClient, api: str, db) -> None:
    send = (await alice.post("/api/sends", text_send(alice, maxAccessCount=5))).json()
    replies = await asyncio.gather(*(anonymous_access(api, send["accessId"]) for _ in range(25)))
    assert sorted(r.status_code for r in replies) == [200] * 5 + [404] * 20
    assert await db.fetchval("SELECT access_count FROM sends") == 5


async def test_another_users_send_is_not_found(alice: BitwardenClient, bob: BitwardenClient) -> None:
    send = (await alice.post("/api/sends", text_send(alice))).json()
    assert (await bob.get(f"/api/sends/{send['id']}")).status_code == 404
    assert (await bob.put(f"/api/sends/{send['id']}", text_send(bob))).status_code == 404
    assert (await bob.delete(f"/api/sends/{send['id']}")).status_code == 404
    assert (await bob.get("/api/sends")).json()["data"] == []


async def test_file_send_upload_access_and_download(alice: BitwardenClient, api: str) -> None:
    data = os.urandom(1_500_000)
    request = {**text_send(alice), "type": 1, "text": None, "file": {"fileName": alice.encrypt("report.pdf")},
               "fileLength": len(data)}
    made = await alice.post("/api/sends/file/v2", request)
    assert made.status_code == 200, made.text
    send = made.json()["sendResponse"]
    file_id = send["file"]["id"]
    # not accessible before its file is in
    assert (await anonymous_access(api, send["accessId"])).status_code == 404
    uploaded = await alice.post(f"/api/sends/{send['id']}/file/{file_id}",
                                files={"data": (alice.encrypt("report.pdf"), data, "application/octet-stream")})
    assert uploaded.status_code == 200, uploaded.text
    opened = (await anonymous_access(api, send["accessId"])).json()
    assert opened["file"]["id"] == file_id and opened["file"]["size"] == str(len(data))
    async with httpx.AsyncClient(base_url=api) as http:
        url = (await http.post(f"/api/sends/{send['accessId']}/access/file/{file_id}", json={})).json()["url"]
        fetched = await http.get(url[url.index("/sends/"):])
    assert fetched.content == data


async def test_deletion_dates_are_swept_once_with_their_files(alice: BitwardenClient, database_url: str,
                                                               db, events) -> None:
    me = await user_id_of(alice)
    gone = (await alice.post("/api/sends", text_send(alice))).json()
    kept = (await alice.post("/api/sends", text_send(alice))).json()
    await events.next()
    await events.next()
    await db.execute("UPDATE sends SET deletion_date = now() WHERE id = $1", __import__("uuid").UUID(gone["id"]))
    await events.next()
    pools = [await open_pool(database_url) for _ in range(2)]
    try:
        # another replica holds the sweep's lock: this one skips its turn
        holder = await asyncpg.connect(database_url)
        await holder.execute("SELECT pg_advisory_lock($1)", housekeeping.LOCK)
        assert await housekeeping.sweep(pools[0], PostgresStore(pools[0])) is None
        await holder.close()
        swept = await asyncio.gather(*(housekeeping.sweep(pool, PostgresStore(pool)) for pool in pools))
    finally:
        for pool in pools:
            await pool.close()
    assert sum(s.sends for s in swept if s is not None) == 1
    assert [str(r["id"]) for r in await db.fetch("SELECT id FROM sends")] == [kept["id"]]
    event = await events.next()
    assert (int(event.type), event.item_id) == (14, gone["id"])
    await events.nothing()


async def send_access_grant(api: str, access_id: str, password: str | None = None) -> httpx.Response:
    form = {"grant_type": "send_access", "client_id": "send", "scope": "api.send.access", "send_id": access_id}
    if password is not None:
        form["password_hash_b64"] = password
    async with httpx.AsyncClient(base_url=api) as http:
        return await http.post("/identity/connect/token", data=form)


async def test_the_send_access_grant_and_its_token(alice: BitwardenClient, api: str) -> None:
    send = (await alice.post("/api/sends", text_send(alice, password="client-hash", maxAccessCount=1))).json()
    refusals = [await send_access_grant(api, send["accessId"]),
                await send_access_grant(api, send["accessId"], "wrong"),
                await send_access_grant(api, "AAAAAAAAAAAAAAAAAAAAAA")]
    assert [(r.status_code, r.json()["error"], r.json()["send_access_error_type"]) for r in refusals] == [
        (400, "invalid_request", "password_hash_b64_required"), (400, "invalid_grant", "password_hash_b64_invalid"),
        (400, "invalid_grant", "send_id_invalid")]
    granted = await send_access_grant(api, send["accessId"], "client-hash")
    assert granted.status_code == 200 and granted.json()["expires_in"] > 0
    bearer = {"Authorization": f"Bearer {granted.json()['access_token']}"}
    async with httpx.AsyncClient(base_url=api) as http:
        as_user = await http.post("/api/sends/access", headers={"Authorization": f"Bearer {alice.access_token}"})
        opened = await http.post("/api/sends/access", headers=bearer)
        spent = await http.post("/api/sends/access", headers=bearer)
    assert as_user.status_code == 401
    assert opened.status_code == 200 and alice.decrypt(opened.json()["text"]["text"]) == "the secret"
    assert spent.status_code == 404
    # a login token is no Send token either way
    assert (await alice.get("/api/sends", headers=bearer)).status_code == 401
