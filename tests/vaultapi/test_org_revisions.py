"""An organization's item change moves the revision date its members poll, and only theirs, by
writing one row whatever the organization's size; leaving never moves a date back."""

from __future__ import annotations

import uuid

import asyncpg

from tests.support.bwclient import BitwardenClient
from tests.support.organizations import USER, Organization, grant
from tests.vaultapi.conftest import user_id_of


async def revision(client: BitwardenClient) -> int:
    reply = await client.get("/api/accounts/revision-date")
    assert reply.status_code == 200, reply.text
    return reply.json()


async def test_org_item_change_moves_the_members_revision_date_and_no_one_elses(
        alice: BitwardenClient, bob: BitwardenClient, carol: BitwardenClient, db: asyncpg.Connection) -> None:
    org = await Organization.create(alice)
    await org.add(bob, USER, [grant(org.default_collection)])
    await org.invite(carol.email, USER)  # accepted, not confirmed: reaches nothing
    before = {name: await revision(client) for name, client in (("alice", alice), ("bob", bob), ("carol", carol))}
    own_rows = await db.fetch("SELECT user_id, revision_date FROM user_revisions ORDER BY user_id")

    item = await org.item("Wifi", [org.default_collection], by=bob)

    after = {name: await revision(client) for name, client in (("alice", alice), ("bob", bob), ("carol", carol))}
    assert after["alice"] > before["alice"] and after["bob"] > before["bob"]
    assert after["carol"] == before["carol"]
    # no member's own row was written: one organization row moved
    assert await db.fetch("SELECT user_id, revision_date FROM user_revisions ORDER BY user_id") == own_rows
    org_date = await db.fetchval("SELECT revision_date FROM organization_revisions WHERE organization_id = $1",
                                 uuid.UUID(org.id))
    assert after["bob"] == int(org_date.timestamp() * 1000)
    # and the member's next sync lists the item
    assert (await bob.sync())["ciphers"][0]["id"] == item["id"]


async def test_leaving_never_moves_the_revision_date_back(alice: BitwardenClient, bob: BitwardenClient) -> None:
    org = await Organization.create(alice)
    await org.add(bob, USER, [grant(org.default_collection)])
    await org.item("Wifi", [org.default_collection])
    while_member = await revision(bob)
    reply = await bob.post(f"/api/organizations/{org.id}/leave")
    assert reply.status_code == 200, reply.text
    assert await revision(bob) > while_member


async def test_own_change_moves_past_the_organizations_date(alice: BitwardenClient, bob: BitwardenClient,
                                                            db: asyncpg.Connection) -> None:
    org = await Organization.create(alice)
    await org.add(bob, USER, [grant(org.default_collection)])
    # an organization's date ahead of the clock, as a burst of changes in one millisecond leaves it
    await db.execute("UPDATE organization_revisions SET revision_date = now() + interval '1 hour'")
    ahead = await revision(bob)
    reply = await bob.post("/api/folders", {"name": bob.encrypt("Mine")})
    assert reply.status_code == 200, reply.text
    assert await revision(bob) > ahead
    assert await db.fetchval("SELECT revision_date FROM user_revisions WHERE user_id = $1",
                             uuid.UUID(await user_id_of(bob))) > await db.fetchval(
        "SELECT revision_date FROM organization_revisions")
