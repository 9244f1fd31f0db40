"""Who may not see an organization's things sees nothing of them: a non-member, a revoked member,
a read-only member, a member without the collection.

Every route that takes an organization, member, collection or item id is tried by each of them
with ids they must not reach: a 404 as for a made-up id (a 400 where the id is a value in a body,
as for a foreign folder), no change to any row, no event, and nothing of it in their sync.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from tests.support.bwclient import BitwardenClient
from tests.support.organizations import USER, Organization, grant
from tests.support.vaultstate import assert_error_shape
from tests.vaultapi.conftest import registered, user_id_of


@dataclass
class Arena:
    org: Organization
    open: str  # a collection bob reads and carol does not hold
    hidden: str  # a collection only carol holds
    items: dict[str, dict[str, Any]]  # open, hidden, loose (in no collection)
    members: dict[str, str]  # email -> membership id


async def organization_rows(db: asyncpg.Connection) -> tuple[str, ...]:
    return tuple(await db.fetchrow(
        """
        SELECT (SELECT jsonb_agg(o ORDER BY o.id) FROM organizations o)::text,
               (SELECT jsonb_agg(m ORDER BY m.id) FROM memberships m)::text,
               (SELECT jsonb_agg(c ORDER BY c.id) FROM collections c)::text,
               (SELECT jsonb_agg(g ORDER BY g.collection_id, g.membership_id) FROM collection_members g)::text,
               (SELECT jsonb_agg(c ORDER BY c.id) FROM ciphers c WHERE organization_id IS NOT NULL)::text
        """))


def member_routes(a: Arena) -> list[tuple[str, str, Any]]:
    """What every confirmed member may read."""
    return [("GET", f"{a.org.path}/keys", None), ("GET", f"{a.org.path}/groups", None),
            ("GET", f"{a.org.path}/policies", None), ("GET", f"{a.org.path}/collections", None),
            ("GET", f"{a.org.path}/collections/details", None)]


def organization_routes(a: Arena, client: BitwardenClient, collection: str, owner_id: str) -> list[tuple[str, str, Any]]:
    """What only a member with the right role may do in the organization; `collection` is one
    the client does not hold."""
    org, member = a.org.path, a.members["alice@example.com"]
    sel = [grant(a.members["bob@example.com"])]
    return [
        ("GET", org, None), ("PUT", org, {"name": "Mine", "billingEmail": "x@example.com"}),
        ("DELETE", org, {"masterPasswordHash": client.password_hash()}),
        ("POST", f"{org}/keys", {"publicKey": "cHVi", "encryptedPrivateKey": "2.AAAA|BBBB|CCCC"}),
        ("GET", f"{org}/users", None), ("GET", f"{org}/users/{member}", None), ("GET", f"{org}/users/{member}?", None),
        ("POST", f"{org}/users/invite", {"emails": ["x@example.com"], "type": USER}),
        ("POST", f"{org}/users/public-keys", {"ids": [member]}),
        ("POST", f"{org}/users/{member}/confirm", {"key": "4.a2V5"}),
        ("POST", f"{org}/users/confirm", {"keys": [{"id": member, "key": "4.a2V5"}]}),
        ("PUT", f"{org}/users/{member}", {"type": USER}), ("PUT", f"{org}/users/{member}/revoke", None),
        ("PUT", f"{org}/users/revoke", {"ids": [member]}), ("PUT", f"{org}/users/{member}/restore", None),
        ("PUT", f"{org}/users/{member}/restore/vnext", {}), ("PUT", f"{org}/users/restore", {"ids": [member]}),
        ("DELETE", f"{org}/users/{member}", None), ("POST", f"{org}/users/{member}/remove", None),
        ("DELETE", f"{org}/users", {"ids": [member]}),
        ("POST", f"{org}/collections", {"name": "2.AAAA|BBBB|CCCC", "users": sel}),
        ("GET", f"{org}/collections/{collection}", None), ("GET", f"{org}/collections/{collection}/details", None),
        ("GET", f"{org}/collections/{collection}/users", None),
        ("PUT", f"{org}/collections/{collection}", {"name": "2.AAAA|BBBB|CCCC", "users": sel}),
        ("POST", f"{org}/collections/{collection}", {"name": "2.AAAA|BBBB|CCCC", "users": []}),
        ("DELETE", f"{org}/collections/{collection}", None),
        ("POST", f"{org}/collections/{collection}/delete", None),
        ("DELETE", f"{org}/collections", {"ids": [collection]}),
        ("POST", f"{org}/collections/bulk-access", {"collectionIds": [collection], "users": sel}),
        ("GET", f"/api/ciphers/organization-details?organizationId={a.org.id}", None),
        ("GET", f"/api/users/{owner_id}/public-key", None),
    ]


def unreachable_item_routes(client: BitwardenClient, org_id: str, item_id: str) -> list[tuple[str, str, Any]]:
    edit = client.org_item(org_id, "taken")
    return [
        ("GET", f"/api/ciphers/{item_id}", None), ("GET", f"/api/ciphers/{item_id}/details", None),
        ("PUT", f"/api/ciphers/{item_id}", edit), ("POST", f"/api/ciphers/{item_id}", edit),
        ("PUT", f"/api/ciphers/{item_id}/partial", {"folderId": None, "favorite": True}),
        ("PUT", f"/api/ciphers/{item_id}/delete", None), ("PUT", f"/api/ciphers/{item_id}/restore", None),
        ("DELETE", f"/api/ciphers/{item_id}", None), ("POST", f"/api/ciphers/{item_id}/delete", None),
        ("PUT", "/api/ciphers/move", {"ids": [item_id], "folderId": None}),
        ("PUT", "/api/ciphers/delete", {"ids": [item_id]}), ("PUT", "/api/ciphers/restore", {"ids": [item_id]}),
        ("POST", "/api/ciphers/delete", {"ids": [item_id]}),
        ("PUT", f"/api/ciphers/{item_id}/collections_v2", {"collectionIds": []}),
        ("PUT", f"/api/ciphers/{item_id}/collections", {"collectionIds": []}),
        ("PUT", f"/api/ciphers/{item_id}/share", {"cipher": edit, "collectionIds": []}),
    ]


def invalid_values(a: Arena, client: BitwardenClient, collection: str) -> list[tuple[str, str, Any]]:
    """Requests naming the organization or a collection in a body: invalid values."""
    return [
        ("POST", "/api/ciphers", client.org_item(a.org.id, "mine")),
        ("POST", "/api/ciphers/create", {"cipher": client.org_item(a.org.id, "mine"), "collectionIds": [collection]}),
        ("POST", "/api/ciphers/create", {"cipher": client.login_item("mine"), "collectionIds": [collection]}),
    ]


async def test_nobody_reaches_what_is_not_theirs(alice: BitwardenClient, bob: BitwardenClient,
                                                 carol: BitwardenClient, new_client, events,
                                                 db: asyncpg.Connection) -> None:
    dave = await registered(new_client, "dave@example.com", "Dave")
    eve = await registered(new_client, "eve@example.com", "Eve")
    org = await Organization.create(alice)
    hidden = await org.collection("Hidden")
    await org.add(bob, USER, [grant(org.default_collection, read_only=True)])
    await org.add(carol, USER, [grant(hidden, manage=True)])
    dave_membership = await org.add(dave, USER, [grant(org.default_collection, manage=True)])
    assert (await alice.put(f"{org.path}/users/{dave_membership}/revoke")).status_code == 200
    items = {"open": await org.item("Open", [org.default_collection]),
             "hidden": await org.item("Hidden", [hidden]),
             "loose": (await alice.post("/api/ciphers", alice.org_item(org.id, "Loose"))).json()}
    eves = await Organization.create(eve, "Eve's")
    a = Arena(org, org.default_collection, hidden, items, org.members)
    for client in (bob, carol, dave):
        client.org_keys.setdefault(org.id, alice.org_keys[org.id])  # as if the key had leaked
    eve.org_keys[org.id] = alice.org_keys[org.id]
    # a personal item of each, to aim share requests at the organization
    personal = {c.email: (await c.post("/api/ciphers", c.login_item("own"))).json()["id"] for c in (bob, dave, eve)}

    alice_id = await user_id_of(alice)
    await _drain(events)
    rows_before = await organization_rows(db)
    reachable = {"bob": {"open"}, "carol": {"hidden"}, "dave": set(), "eve": set()}
    for name, client in (("bob", bob), ("carol", carol), ("dave", dave), ("eve", eve)):
        requests: list[tuple[str, str, Any, int]] = []
        # bob and carol are plain members: every managing route is a 404, as for dave and eve
        collection = org.default_collection if name == "carol" else hidden
        requests += [(m, p, b, 404) for m, p, b in organization_routes(a, client, collection, alice_id)]
        if name in ("dave", "eve"):
            requests += [(m, p, b, 404) for m, p, b in member_routes(a)]
        for item_name, item in items.items():
            if item_name not in reachable[name]:
                requests += [(m, p, b, 404) for m, p, b in unreachable_item_routes(client, org.id, item["id"])]
        if name in ("dave", "eve"):
            requests += [(m, p, b, 400) for m, p, b in invalid_values(a, client, org.default_collection)]
            requests.append(("PUT", f"/api/ciphers/{personal[client.email]}/share",
                             {"cipher": client.org_item(org.id, "x"), "collectionIds": [org.default_collection]}, 400))
            requests += [("POST", f"/api/ciphers/import-organization?organizationId={org.id}",
                          {"ciphers": [], "collections": []}, 404),
                         ("POST", f"{org.path}/leave", None, 404 if name == "eve" else 200)]
        if name == "bob":
            # the collection he reads: he may not fill it, nor edit its item
            requests += [(m, p, b, 400) for m, p, b in invalid_values(a, client, org.default_collection)[1:2]]
            requests += [("PUT", f"/api/ciphers/{items['open']['id']}", client.org_item(org.id, "x"), 400),
                         ("PUT", f"/api/ciphers/{items['open']['id']}/delete", None, 400),
                         ("PUT", f"/api/ciphers/{personal[client.email]}/share",
                          {"cipher": client.org_item(org.id, "x"), "collectionIds": [hidden]}, 400)]
        if name == "carol":
            requests.append(("POST", "/api/ciphers/create",
                             {"cipher": client.org_item(org.id, "x"), "collectionIds": [org.default_collection]}, 400))
        for method, path, body, status in requests:
            if status == 200:
                continue  # dave leaving is a change, made last
            reply = await client.call(method, path, body)
            assert reply.status_code == status, (name, method, path, reply.status_code, reply.text)
            assert_error_shape(reply)
        assert await organization_rows(db) == rows_before, name
        await events.nothing()

        sync = (await client.get("/api/sync")).text
        for item_name, item in items.items():
            assert (item["id"] in sync) == (item_name in reachable[name]), (name, item_name)
        assert (hidden in sync) == (name == "carol"), name
        assert (org.default_collection in sync) == (name == "bob"), name
        assert (org.id in sync) == (name in ("bob", "carol")), name
        for membership in org.members.values():
            assert membership not in sync or membership == org.members.get(client.email), name
        assert alice_id not in sync
        # another organization's collection names nothing here either
        assert eves.default_collection not in sync or name == "eve"

    # a revoked member may still leave; then it is gone for good
    assert (await dave.post(f"{org.path}/leave")).status_code == 200
    assert await db.fetchval("SELECT count(*) FROM memberships WHERE id = $1", uuid.UUID(dave_membership)) == 0


async def _drain(events) -> None:
    import asyncio

    while True:
        try:
            await asyncio.wait_for(events.queue.get(), 0.3)
        except TimeoutError:
            return
