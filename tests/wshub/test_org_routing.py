"""An organization's item change reaches exactly the connected members who see the item, through
a real hub and real PostgreSQL; membership changes apply to routing at once."""

from __future__ import annotations

from db.events import MAX_EVENT_COLLECTIONS
from tests.wshub.orgs import ADMIN, OWNER, USER, Org, cipher
from tests.wshub.support import eventually

CONTEXT = "4f1b2a9e-5d2c-4e8a-9a59-0c6f3b7f9d11"


async def test_item_reaches_exactly_the_members_who_see_it(db, make_user, connect) -> None:
    owner, reader, outsider_member, stranger, invited, revoked = [await make_user() for _ in range(6)]
    org = await Org.create(db)
    a, b = await org.collection(), await org.collection()
    await org.member(owner, OWNER)
    await org.member(reader, USER, [a])
    await org.member(outsider_member, USER, [b])
    await org.member(invited, USER, [a], status=1)
    await org.member(revoked, USER, [a], status=-1)
    clients = {user.id: await connect(user) for user in (owner, reader, outsider_member, stranger, invited, revoked)}

    item, date = await org.item([a], device=CONTEXT)

    expected = cipher(1, item, org.id, [a], date, CONTEXT)
    assert await clients[owner.id].notification() == expected
    assert await clients[reader.id].notification() == expected
    for user in (outsider_member, stranger, invited, revoked):
        await clients[user.id].nothing()


async def test_member_sees_only_the_collections_it_may_know_of(db, make_user, connect) -> None:
    owner, reader = await make_user(), await make_user()
    org = await Org.create(db)
    a, b = await org.collection(), await org.collection()
    await org.member(owner, OWNER)
    await org.member(reader, USER, [a])
    owner_client, reader_client = await connect(owner), await connect(reader)
    item, date = await org.item([a, b])
    assert sorted((await owner_client.notification())["Payload"]["CollectionIds"]) == sorted([a, b])
    assert (await reader_client.notification())["Payload"]["CollectionIds"] == [a]


async def test_item_without_collections_reaches_full_access_members_with_nil_collections(
        db, make_user, connect) -> None:
    admin, custom, reader = await make_user(), await make_user(), await make_user()
    org = await Org.create(db)
    a = await org.collection()
    await org.member(admin, ADMIN)
    await org.member(custom, 4, access_all=True)
    await org.member(reader, USER, [a])
    clients = [await connect(user) for user in (admin, custom, reader)]
    item, date = await org.item([])
    # nil: the clients fetch a new item they do not hold only without CollectionIds to check
    assert await clients[0].notification() == cipher(1, item, org.id, None, date)
    assert await clients[1].notification() == cipher(1, item, org.id, None, date)
    await clients[2].nothing()


async def test_move_between_collections_deletes_for_who_lost_it_and_creates_for_who_gained_it(
        db, make_user, connect) -> None:
    owner, in_a, in_b, in_both = [await make_user() for _ in range(4)]
    org = await Org.create(db)
    a, b = await org.collection(), await org.collection()
    await org.member(owner, OWNER)
    await org.member(in_a, USER, [a])
    await org.member(in_b, USER, [b])
    await org.member(in_both, USER, [a, b])
    item, _ = await org.item([a])
    clients = {user.id: await connect(user) for user in (owner, in_a, in_b, in_both)}

    date = await db.fetchval("UPDATE ciphers SET collection_ids = $2 WHERE id = $1 RETURNING revision_date",
                             item, [b])

    assert await clients[owner.id].notification() == cipher(0, item, org.id, [b], date)
    assert await clients[in_both.id].notification() == cipher(0, item, org.id, [b], date)
    assert await clients[in_a.id].notification() == cipher(2, item, org.id, [a], date)
    assert await clients[in_b.id].notification() == cipher(1, item, org.id, [b], date)


async def test_deletion_reaches_who_saw_the_item(db, make_user, connect) -> None:
    reader, other = await make_user(), await make_user()
    org = await Org.create(db)
    a, b = await org.collection(), await org.collection()
    await org.member(reader, USER, [a])
    await org.member(other, USER, [b])
    item, _ = await org.item([a])
    reader_client, other_client = await connect(reader), await connect(other)
    await db.execute("DELETE FROM ciphers WHERE id = $1", item)
    notification = await reader_client.notification()
    assert (notification["Type"], notification["Payload"]["Id"], notification["Payload"]["CollectionIds"]) == (
        2, item, [a])
    await other_client.nothing()


async def test_bulk_change_reaches_the_members_of_its_collections_without_naming_items(
        db, make_user, connect) -> None:
    owner, in_a, in_b = [await make_user() for _ in range(3)]
    org = await Org.create(db)
    a, b = await org.collection(), await org.collection()
    await org.member(owner, OWNER)
    await org.member(in_a, USER, [a])
    await org.member(in_b, USER, [b])
    clients = {user.id: await connect(user) for user in (owner, in_a, in_b)}
    await db.execute("INSERT INTO ciphers (organization_id, collection_ids, type, data)"
                     " SELECT $1, $2, 1, '{}' FROM generate_series(1, 3)", org.id, [a])
    for user in (owner, in_a):
        notification = await clients[user.id].notification()
        assert notification["Type"] == 5 and notification["Payload"]["UserId"] is None
        assert set(notification["Payload"]) == {"UserId", "Date"}
    await clients[in_b.id].nothing()


async def test_item_in_more_collections_than_an_event_names_is_a_bulk_event_to_every_member(
        db, make_user, connect) -> None:
    member, stranger = await make_user(), await make_user()
    org = await Org.create(db)
    many = [await org.collection() for _ in range(MAX_EVENT_COLLECTIONS + 1)]
    await org.member(member, USER, many[:1])
    member_client, stranger_client = await connect(member), await connect(stranger)
    await org.item(many)
    notification = await member_client.notification()
    assert notification["Type"] == 5 and notification["Payload"] == {"UserId": None,
                                                                      "Date": notification["Payload"]["Date"]}
    await stranger_client.nothing()


async def test_removed_member_hears_nothing_more_without_reconnecting(db, make_user, connect) -> None:
    owner, leaving = await make_user(), await make_user()
    org = await Org.create(db)
    a = await org.collection()
    await org.member(owner, OWNER)
    membership = await org.member(leaving, USER, [a])
    owner_client, leaving_client = await connect(owner), await connect(leaving)
    first, _ = await org.item([a])
    assert (await leaving_client.notification())["Payload"]["Id"] == first
    await owner_client.notification()

    async with db.transaction():  # as vaultapi.models.memberships.remove does it
        await db.execute("INSERT INTO sync_events (user_id, push_type) VALUES ($1, 6)", leaving.id)
        await db.execute("DELETE FROM memberships WHERE id = $1", membership)
    assert (await leaving_client.notification())["Type"] == 6
    second, _ = await org.item([a])
    assert (await owner_client.notification())["Payload"]["Id"] == second
    await leaving_client.nothing()


async def test_granted_collection_applies_at_once(db, make_user, connect) -> None:
    member = await make_user()
    org = await Org.create(db)
    a, b = await org.collection(), await org.collection()
    await org.member(member, USER, [a])
    client = await connect(member)
    await org.item([b])
    await client.nothing()
    async with db.transaction():  # as vaultapi.models.collections does it
        await org.grant(member, b)
        await db.execute("INSERT INTO sync_events (user_id, push_type) VALUES ($1, 5)", member.id)
    assert (await client.notification())["Type"] == 5
    # no wait: an event that arrives while the grants load is kept and routed once they are in
    item, date = await org.item([b])
    assert await client.notification() == cipher(1, item, org.id, [b], date)


async def test_disconnected_user_leaves_no_routing_state(db, make_user, connect, hub) -> None:
    member = await make_user()
    org = await Org.create(db)
    await org.member(member, OWNER)
    client = await connect(member)
    await org.item([])
    await client.notification()
    memberships = hub.app.ctx.memberships
    assert memberships.grants_of(member.id) == {org.id: None}
    await client.close()
    await eventually(lambda: memberships.grants_of(member.id) is None, "grants dropped with the last connection")
    assert not memberships._members and not memberships._everything and not memberships._loading
