"""Input on the organization routes: the same field checks, body limits and item caps as the
personal routes, and the limits Bitwarden sets on collections and invitations.
"""

from __future__ import annotations

import uuid

from sanic import Sanic

from tests.support.bwclient import BitwardenClient
from tests.support.organizations import Organization, grant
from tests.support.rawhttp import send_start_of
from tests.vaultapi.conftest import PASSWORD, running_api
from vaultapi import body_limits
from vaultapi.routes import ciphers, collections, members, organizations

MiB = 1024 * 1024
#: the routes that read a body and are not the organizations' (their limits came with them)
_OWN_ROUTES = ("api/ciphers", "api/folders", "api/accounts", "api/devices", "api/settings", "identity/")


def _routes_with_bodies() -> set[str]:
    app = Sanic(f"route_listing_{uuid.uuid4().hex}")
    for area in (ciphers, collections, members, organizations):
        app.blueprint(area.bp)
    app.router.finalize()
    return {route.path for route in app.router.routes if route.methods - {"GET", "HEAD", "OPTIONS", "DELETE"}}


def test_every_organization_route_has_its_own_body_limit() -> None:
    organization_routes = {path for path in _routes_with_bodies()
                           if "organization" in path or path.endswith(("share", "/create", "collections",
                                                                        "collections_v2"))}
    assert organization_routes
    default = {path for path in organization_routes if path not in body_limits._BODY_LIMITS}
    assert not default, default
    large = {path for path in organization_routes if body_limits.body_limit(path) > body_limits.VAULT_BODY}
    assert large == {"api/ciphers/import-organization", "api/ciphers/share"}
    small = {path for path in organization_routes if path.startswith("api/organizations")}
    assert {body_limits.body_limit(path) for path in small} == {body_limits.MANAGEMENT_BODY}


async def test_organization_bodies_past_their_limit_are_413_before_they_are_sent(database_url: str) -> None:
    async with running_api(database_url) as url:
        client = BitwardenClient(url)
        try:
            await client.register("big@example.com", PASSWORD)
            await client.login()
            org = await Organization.create(client)
            auth = {"Authorization": f"Bearer {client.access_token}"}
            for path, declared in ((f"{org.path}/collections", MiB), (f"{org.path}/users/invite", MiB),
                                   (f"{org.path}/users/confirm", MiB), ("/api/ciphers/share", 64 * MiB),
                                   (f"/api/ciphers/import-organization?organizationId={org.id}", 64 * MiB)):
                reply = await send_start_of(url, path, "application/json", declared, headers=auth)
                assert reply.status == 413, (path, reply.status)
        finally:
            await client.aclose()


async def test_collection_fields_are_checked_as_bitwarden_does(alice: BitwardenClient, db) -> None:
    org = await Organization.create(alice)
    before = await db.fetchval("SELECT count(*) FROM collections")
    name = alice.org_encrypt(org.id, "Team")
    for body, field in (
        ({"name": "plain text", "users": []}, "name"),
        ({"name": None, "users": []}, "name"),
        ({"name": "2." + "A" * 1200, "users": []}, "name"),
        ({"name": name, "externalId": "x" * 301, "users": []}, "externalId"),
    ):
        reply = await alice.post(f"{org.path}/collections", body)
        assert reply.status_code == 400, (field, reply.text)
        assert field in reply.json()["validationErrors"], reply.json()
    assert (await alice.post(f"{org.path}/collections", {"name": name, "externalId": "x" * 300})).status_code == 200
    renamed = await alice.put(f"{org.path}/collections/{org.default_collection}", {"name": "not encrypted"})
    assert renamed.status_code == 400
    assert await db.fetchval("SELECT count(*) FROM collections") == before + 1


async def test_an_invitation_names_at_most_twenty_addresses(alice: BitwardenClient, db) -> None:
    org = await Organization.create(alice)
    body = {"type": 2, "collections": [], "groups": [], "permissions": {}, "accessSecretsManager": False}
    many = await alice.post(f"{org.path}/users/invite", {**body, "emails": [f"u{n}@example.com" for n in range(21)]})
    assert many.status_code == 400 and "emails" in many.json()["validationErrors"]
    # counted before a single address is looked at
    junk = await alice.post(f"{org.path}/users/invite", {**body, "emails": [None] * 1000})
    assert junk.status_code == 400 and "20" in junk.json()["message"]
    fits = await alice.post(f"{org.path}/users/invite", {**body, "emails": [f"u{n}@example.com" for n in range(20)]})
    assert fits.status_code == 200, fits.text
    assert await db.fetchval("SELECT count(*) FROM memberships WHERE status = 0") == 20


async def test_organization_items_get_the_field_checks(alice: BitwardenClient, bob: BitwardenClient, db) -> None:
    org = await Organization.create(alice)
    await org.add(bob, 2, [grant(org.default_collection)])
    bad = {**alice.org_item(org.id, "x"), "notes": "plain notes"}
    created = await alice.post("/api/ciphers/create", {"cipher": bad, "collectionIds": [org.default_collection]})
    assert created.status_code == 400 and "notes" in created.json()["validationErrors"]
    personal = (await bob.post("/api/ciphers", bob.login_item("Mine"))).json()
    shared = await bob.put(f"/api/ciphers/{personal['id']}/share", {
        "cipher": {**bob.org_item(org.id, "Mine"), "login": {"username": "plain"}},
        "collectionIds": [org.default_collection]})
    assert shared.status_code == 400 and "login.username" in shared.json()["validationErrors"]
    bulk = await bob.put("/api/ciphers/share", {
        "ciphers": [{**bob.org_item(org.id, "Mine"), "id": personal["id"], "name": "plain"}],
        "collectionIds": [org.default_collection]})
    assert bulk.status_code == 400 and "ciphers[0].name" in bulk.json()["validationErrors"]
    imported = await alice.post(f"/api/ciphers/import-organization?organizationId={org.id}", {
        "ciphers": [alice.org_item(org.id, "a"), {**alice.org_item(org.id, "b"), "notes": "plain"}],
        "collections": [], "collectionRelationships": []})
    assert imported.status_code == 400 and "ciphers[1].notes" in imported.json()["validationErrors"]
    assert await db.fetchval("SELECT count(*) FROM ciphers WHERE organization_id IS NOT NULL") == 0


async def test_organization_items_are_capped_apart_from_the_members_vaults(database_url: str, new_client,
                                                                          db) -> None:
    async with running_api(database_url, max_items_per_user=2) as url:
        client = new_client()
        client.base_url, client.http.base_url = url, url
        await client.register("full@example.com", PASSWORD)
        await client.login()
        org = await Organization.create(client)
        own = [(await client.post("/api/ciphers", client.login_item(f"n{n}"))).json() for n in range(2)]
        # a full vault does not stop the organization's items, nor the other way round
        for n in range(2):
            await org.item(f"o{n}", [org.default_collection])
        refused = await client.post("/api/ciphers/create", {"cipher": client.org_item(org.id, "too many"),
                                                            "collectionIds": [org.default_collection]})
        assert refused.status_code == 400 and "organization" in refused.json()["message"]
        imported = await client.post(f"/api/ciphers/import-organization?organizationId={org.id}", {
            "ciphers": [client.org_item(org.id, "i")], "collections": [], "collectionRelationships": []})
        assert imported.status_code == 400
        shared = await client.put(f"/api/ciphers/{own[0]['id']}/share", {
            "cipher": {**client.org_item(org.id, "n0"), "lastKnownRevisionDate": own[0]["revisionDate"]},
            "collectionIds": [org.default_collection]})
        assert shared.status_code == 400
        assert await db.fetchval("SELECT count(*) FROM ciphers WHERE organization_id IS NOT NULL") == 2
        assert await db.fetchval("SELECT count(*) FROM ciphers WHERE user_id IS NOT NULL") == 2
        # the sync lists both kinds, and the organization's collections
        sync = await client.sync()
        assert len(sync["ciphers"]) == 4 and [c["id"] for c in sync["collections"]] == [org.default_collection]
