"""Randomized, seeded: users in two organizations with random roles, statuses and collections,
and a random run of item changes and membership changes through a real hub. After every step,
each user's notifications are checked against what the database says the user reaches
(the cipher_access view, which every read of the API goes through) before and after the step:
nobody hears of an item it could not see, everybody who sees a changed item hears of it, with the
push type for what changed for that user, and nobody outside an organization hears of its bulk
changes."""

from __future__ import annotations

import random
from typing import Any

import asyncpg
import pytest

from tests.wshub.orgs import ADMIN, OWNER, USER, Org
from tests.wshub.support import HubClient, HubUser, eventually

STEPS = 40
UPDATE, CREATE, DELETE = 0, 1, 2
FOLDER_CREATE = 7


async def reach(db: asyncpg.Connection) -> set[tuple[str, str]]:
    """(user, organization item) pairs the database lets the user see."""
    rows = await db.fetch("SELECT a.user_id::text, a.cipher_id::text FROM cipher_access a"
                          " JOIN ciphers c ON c.id = a.cipher_id WHERE c.organization_id IS NOT NULL")
    return {(row[0], row[1]) for row in rows}


async def members(db: asyncpg.Connection) -> set[tuple[str, str]]:
    """(user, organization) pairs of confirmed members of enabled organizations."""
    rows = await db.fetch("SELECT DISTINCT user_id::text, organization_id::text FROM member_access")
    return {(row[0], row[1]) for row in rows}


async def heard(db: asyncpg.Connection, clients: dict[str, HubClient]) -> dict[str, list[dict[str, Any]]]:
    """Everything each user was told up to a fence: one folder per user, made after the step."""
    rows = await db.fetch("INSERT INTO folders (user_id, name) SELECT unnest($1::uuid[]), 'fence'"
                          " RETURNING user_id::text, id::text", list(clients))
    fences = {row[0]: row[1] for row in rows}
    told: dict[str, list[dict[str, Any]]] = {}
    for user, client in clients.items():
        told[user] = []
        while (message := await client.notification()) != {**message, "Type": FOLDER_CREATE} \
                or message["Payload"]["Id"] != fences[user]:
            told[user].append(message)
    return told


@pytest.mark.parametrize("seed", [11, 22, 33])
async def test_nobody_hears_of_an_item_it_cannot_see(seed: int, db, make_user, connect, hub) -> None:
    rng = random.Random(seed)
    users = [await make_user() for _ in range(6)]
    orgs = [await Org.create(db) for _ in range(2)]
    collections = {org.id: [await org.collection() for _ in range(3)] for org in orgs}
    for org in orgs:
        for user in users:
            if rng.random() < 0.2:
                continue  # not a member
            await org.member(user, rng.choice([OWNER, ADMIN, USER, USER, USER]),
                             rng.sample(collections[org.id], rng.randint(0, 2)), status=rng.choice([2, 2, 2, 1, -1]))
    clients = {user.id: await connect(user) for user in users}
    by_id: dict[str, HubUser] = {user.id: user for user in users}
    memberships = hub.app.ctx.memberships
    items: dict[str, Org] = {}

    for step in range(STEPS):
        await eventually(lambda: all(user in memberships for user in clients), "every user's grants loaded")
        seen_before, members_before = await reach(db), await members(db)
        org = rng.choice(orgs)
        actions = ["create", "create", "bulk", "grant", "remove", "revoke"]
        if items:
            actions += ["move", "move", "edit", "delete"]
        action = rng.choice(actions)
        changed: set[str] = set()  # the items whose change every user who sees them must hear of
        notified_users: set[str] = set()  # the users told of a change of their membership
        async with db.transaction():
            if action == "create":
                item, _ = await org.item(rng.sample(collections[org.id], rng.randint(0, 2)))
                items[item] = org
                changed.add(item)
            elif action == "bulk":
                rows = await db.fetch(
                    "INSERT INTO ciphers (organization_id, collection_ids, type, data)"
                    " SELECT $1, $2, 1, '{}' FROM generate_series(1, 2) RETURNING id::text",
                    org.id, rng.sample(collections[org.id], rng.randint(0, 2)))
                items.update({row[0]: org for row in rows})
            elif action in ("move", "edit", "delete"):
                item = rng.choice(sorted(items))
                org = items[item]
                changed.add(item)
                if action == "move":
                    await db.execute("UPDATE ciphers SET collection_ids = $2 WHERE id = $1",
                                     item, rng.sample(collections[org.id], rng.randint(0, 3)))
                elif action == "edit":
                    await db.execute("UPDATE ciphers SET data = '{\"n\": 1}' WHERE id = $1", item)
                else:
                    await db.execute("DELETE FROM ciphers WHERE id = $1", item)
                    del items[item]
            elif org.memberships:
                user = rng.choice(sorted(org.memberships))
                membership = org.memberships[user]
                if action == "grant":
                    collection = rng.choice(collections[org.id])
                    removed = await db.fetchval("DELETE FROM collection_members WHERE collection_id = $1"
                                                " AND membership_id = $2 RETURNING 1", collection, membership)
                    if not removed:
                        await org.grant(by_id[user], collection)
                    push_type = 5
                else:
                    push_type = 6
                # as vaultapi/publish.py: the member's event first, then the change
                await db.execute("INSERT INTO sync_events (user_id, push_type) VALUES ($1, $2)", user, push_type)
                notified_users.add(user)
                if action == "remove":
                    await db.execute("DELETE FROM memberships WHERE id = $1", membership)
                    del org.memberships[user]
                elif action == "revoke":
                    await db.execute(
                        "UPDATE memberships SET status = CASE WHEN status = -1 THEN status_before_revoke ELSE -1 END,"
                        " status_before_revoke = CASE WHEN status = -1 THEN NULL ELSE status END WHERE id = $1",
                        membership)
        told = await heard(db, clients)
        seen_after, members_after = await reach(db), await members(db)

        for user, messages in told.items():
            where = f"seed {seed} step {step} {action}: user {user} told {messages}"
            item_events = [m for m in messages if m["Payload"].get("Id") is not None]
            bulk_events = [m for m in messages if "Id" not in m["Payload"] and m["Payload"]["UserId"] is None]
            own_events = [m for m in messages if m["Payload"].get("UserId") == user]
            assert len(item_events) + len(bulk_events) + len(own_events) == len(messages), where
            for message in item_events:
                item = message["Payload"]["Id"]
                before, after = (user, item) in seen_before, (user, item) in seen_after
                assert before or after, "told of an item it cannot see: " + where
                expected = {(True, True): message["Type"] if action != "delete" else DELETE,
                            (False, True): CREATE, (True, False): DELETE}[(before, after)]
                assert message["Type"] == expected, where
                if before and after and action in ("move", "edit"):
                    assert message["Type"] == UPDATE, where
            for message in bulk_events:
                assert action == "bulk" and (user, org.id) in members_before | members_after, where
            assert [m["Type"] for m in own_events] == ([5 if action == "grant" else 6] if user in notified_users
                                                       else []), where
            # everyone who sees (or saw) a changed item hears of it once
            for item in changed:
                should = (user, item) in seen_before | seen_after
                assert [m["Payload"]["Id"] for m in item_events].count(item) == int(should), where
