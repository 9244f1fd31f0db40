"""Confirming, removing, leaving and editing an organization at the same moment, over and over:
whatever the interleaving, no one who left keeps the organization's key or its items, every
item keeps its organization, and the organization keeps a confirmed Owner."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from tests.support.bwclient import BitwardenClient
from tests.support.organizations import ADMIN, USER, Organization, grant
from vaultapi.clientcrypto import wrap_key

ROUNDS = 4


async def test_confirm_remove_leave_and_edit_at_once_leave_a_consistent_organization(
        alice: BitwardenClient, bob: BitwardenClient, carol: BitwardenClient, new_client,
        db: asyncpg.Connection) -> None:
    dave = new_client()
    await dave.register("dave@example.com", "dave's password", name="Dave")
    await dave.login()
    org = await Organization.create(alice)
    for round_number in range(ROUNDS):
        bob_membership = await org.add(bob, ADMIN)
        carol_membership = await org.add(carol, USER, [grant(org.default_collection)])
        dave_membership = await org.invite(dave.email, USER, [grant(org.default_collection)])
        item = await org.item(f"item {round_number}", [org.default_collection], by=carol)
        public_key = (await alice.get(f"/api/users/{await user_of(dave)}/public-key")).json()["publicKey"]
        confirmation = {"key": wrap_key(public_key, alice.org_keys[org.id]),
                        "defaultUserCollectionName": alice.org_encrypt(org.id, "My items")}

        results = await asyncio.gather(
            alice.post(f"{org.path}/users/{dave_membership}/confirm", confirmation),
            bob.delete(f"{org.path}/users/{carol_membership}"),
            carol.put(f"/api/ciphers/{item['id']}", carol.org_item(org.id, "edited by carol")),
            carol.post("/api/ciphers/create", {"cipher": carol.org_item(org.id, "new by carol"),
                                               "collectionIds": [org.default_collection]}),
            bob.post(f"{org.path}/leave"),
            alice.delete(f"{org.path}/users/{dave_membership}"),
        )
        # every request answered, none with a server error
        assert all(reply.status_code < 500 for reply in results), [r.text for r in results]

        left = {await user_of(c) for c in (bob, carol, dave)}
        # no one who left holds the key, or a membership at all
        rows = await db.fetch("SELECT user_id, status, key FROM memberships WHERE organization_id = $1",
                              uuid.UUID(org.id))
        assert {row["user_id"] for row in rows} & left == set()
        assert all(row["key"] is not None for row in rows if row["status"] == 2)
        for client in (bob, carol, dave):
            synced = await client.sync()
            assert org.id not in [o["id"] for o in synced["profile"]["organizations"]]
            assert all(c["organizationId"] != org.id for c in synced["ciphers"])
            assert (await client.get(f"/api/ciphers/{item['id']}")).status_code == 404
        # every item has its one owner, the organization, and the organization an Owner
        assert await db.fetchval("SELECT count(*) FROM ciphers WHERE organization_id IS DISTINCT FROM $1",
                                 uuid.UUID(org.id)) == 0
        assert await db.fetchval("SELECT count(*) FROM memberships WHERE organization_id = $1 AND type = 0"
                                 " AND status = 2", uuid.UUID(org.id)) == 1
        org.members = {alice.email: org.members[alice.email]}
        await db.execute("DELETE FROM ciphers")


async def user_of(client: BitwardenClient) -> uuid.UUID:
    return uuid.UUID((await client.get("/api/accounts/profile")).json()["id"])
