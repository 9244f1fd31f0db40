"""Imports are paced per user: a burst, then one per IMPORT_RATELIMIT_SECONDS, counted in the
database so that every API replica sees the same imports, and refused before the body is read."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from tests.support.bwclient import BitwardenClient
from tests.support.organizations import Organization
from tests.support.rawhttp import send_start_of
from tests.vaultapi.conftest import PASSWORD, client_factory, running_api
from tests.vaultapi.test_login_limits import assert_too_many

BURST = 3
MiB = 1024 * 1024


def personal(client: BitwardenClient, name: str) -> dict[str, Any]:
    return {"ciphers": [client.login_item(name)], "folders": [], "folderRelationships": []}


def into(org: Organization, name: str) -> dict[str, Any]:
    owner = org.owner
    return {"ciphers": [owner.org_item(org.id, name)], "collections": [], "collectionRelationships": []}


async def signed_in(make: Any, email: str, *, register: bool = False) -> BitwardenClient:
    client = make()
    if register:
        await client.register(email, PASSWORD)
    else:
        client.email, client.password = email, PASSWORD
    await client.login()
    return client


async def test_imports_beyond_the_burst_are_429_on_every_replica_and_write_nothing(
    database_url: str, events, db: asyncpg.Connection
) -> None:
    settings = {"import_ratelimit_max_burst": BURST, "import_ratelimit_seconds": 3600}
    async with (running_api(database_url, **settings) as one, running_api(database_url, **settings) as other,
                client_factory(one) as on_one, client_factory(other) as on_other):
        alice = await signed_in(on_one, "alice@example.com", register=True)
        alice_elsewhere = await signed_in(on_other, "alice@example.com")
        bob = await signed_in(on_one, "bob@example.com", register=True)
        org = await Organization.create(alice)
        alice_elsewhere.org_keys = alice.org_keys
        org_import = f"/api/ciphers/import-organization?organizationId={org.id}"
        await events.exactly(1)

        # the burst, shared by both imports and both replicas
        for reply in (await alice.post("/api/ciphers/import", personal(alice, "first")),
                      await alice_elsewhere.post(org_import, into(org, "second")),
                      await alice_elsewhere.post("/api/ciphers/import", personal(alice, "third"))):
            assert reply.status_code == 200, reply.text
        await events.exactly(4)  # each import's sync; the organization's too
        assert await db.fetchval("SELECT count(*) FROM ciphers") == BURST

        for client, path, body in ((alice, "/api/ciphers/import", personal(alice, "refused")),
                                   (alice_elsewhere, org_import, into(org, "refused"))):
            reply = await client.post(path, body)
            assert_too_many(reply, oauth=False)
            assert "import" in reply.json()["message"].lower()
            assert org.id not in reply.text and body["ciphers"][0]["name"] not in reply.text
        # refused from the headers: the reply comes while the announced 30 MiB are still unsent
        huge = await send_start_of(one, "/api/ciphers/import", "application/json", 30 * MiB,
                                   headers={"Authorization": f"Bearer {alice.access_token}"})
        assert huge.status == 429 and huge.json()["object"] == "error"
        await events.nothing()
        assert await db.fetchval("SELECT count(*) FROM ciphers") == BURST

        # another user's imports are their own
        assert (await bob.post("/api/ciphers/import", personal(bob, "bob's"))).status_code == 200
        assert await db.fetchval("SELECT count(*) FROM ciphers") == BURST + 1


async def test_one_more_import_is_accepted_once_the_pace_allows(database_url: str, db: asyncpg.Connection) -> None:
    async with (running_api(database_url, import_ratelimit_max_burst=1, import_ratelimit_seconds=1) as url,
                client_factory(url) as make):
        alice = await signed_in(make, "alice@example.com", register=True)
        assert (await alice.post("/api/ciphers/import", personal(alice, "first"))).status_code == 200
        retry_after = assert_too_many(await alice.post("/api/ciphers/import", personal(alice, "early")), oauth=False)
        # the refused import counted too: two periods at most
        assert retry_after <= 2
        await asyncio.sleep(retry_after + 0.2)
        assert (await alice.post("/api/ciphers/import", personal(alice, "later"))).status_code == 200
        names = {alice.decrypt(row["name"]) for row in await db.fetch("SELECT data->>'name' AS name FROM ciphers")}
        assert names == {"first", "later"}


async def test_by_default_a_fourth_import_in_a_row_is_429(database_url: str) -> None:
    # a person imports a vault a few times (another export, a second try), not ten in a burst
    async with running_api(database_url) as url, client_factory(url) as make:
        alice = await signed_in(make, "alice@example.com", register=True)
        for n in range(3):
            assert (await alice.post("/api/ciphers/import", personal(alice, f"try {n}"))).status_code == 200
        retry_after = assert_too_many(await alice.post("/api/ciphers/import", personal(alice, "fourth")),
                                      oauth=False)
        assert 60 <= retry_after <= 120


async def test_an_import_past_bitwardens_caps_is_refused_whole(database_url: str, db: asyncpg.Connection) -> None:
    # (each import counts against the pace, refused or not)
    async with running_api(database_url, import_ratelimit_max_burst=10) as url, client_factory(url) as make:
        alice = await signed_in(make, "alice@example.com", register=True)
        item, folder = alice.login_item("many"), {"name": alice.encrypt("folder")}
        org = await Organization.create(alice)
        refusals = [
            ("/api/ciphers/import", {"ciphers": [item] * 7001, "folders": [], "folderRelationships": []}, "ciphers"),
            ("/api/ciphers/import", {"ciphers": [item], "folders": [folder] * 2001, "folderRelationships": []},
             "folders"),
            (f"/api/ciphers/import-organization?organizationId={org.id}",
             {"ciphers": [alice.org_item(org.id, "many")] * 7001, "collections": [], "collectionRelationships": []},
             "ciphers"),
            (f"/api/ciphers/import-organization?organizationId={org.id}",
             {"ciphers": [alice.org_item(org.id, "x")], "collections": [folder] * 2001,
              "collectionRelationships": []}, "collections"),
            (f"/api/ciphers/import-organization?organizationId={org.id}",
             {"ciphers": [alice.org_item(org.id, "x")] * 7000, "collections": [folder] * 2,
              "collectionRelationships": [{"key": n % 7000, "value": n // 7000} for n in range(14001)]},
             "collectionRelationships"),
        ]
        before = await db.fetchval("SELECT count(*) FROM ciphers")
        for path, body, field in refusals:
            reply = await alice.post(path, body)
            assert reply.status_code == 400, (field, reply.text)
            assert reply.json()["message"] == "You cannot import this much data at once."
            assert field in reply.json()["validationErrors"]
        assert await db.fetchval("SELECT count(*) FROM ciphers") == before
        assert await db.fetchval("SELECT count(*) FROM folders") == 0
        # as many as Bitwarden takes at once
        reply = await alice.post("/api/ciphers/import", {"ciphers": [item] * 7000, "folders": [folder] * 2000,
                                                        "folderRelationships": []})
        assert reply.status_code == 200, reply.text
        assert await db.fetchval("SELECT count(*) FROM ciphers") == before + 7000
