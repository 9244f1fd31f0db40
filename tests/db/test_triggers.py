"""Every change to a vault row leaves the database as exactly one correct event, after commit."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime

import asyncpg
import pytest

from db.events import PushType
from tests.support.listen import EventListener

DEVICE = "4f1b2a9e-5d2c-4e8a-9a59-0c6f3b7f9d11"


async def new_user(db: asyncpg.Connection, email: str | None = None) -> str:
    email = email or f"{uuid.uuid4().hex[:8]}@example.com"
    user_id = await db.fetchval(
        "INSERT INTO users (email, password_hash, key) VALUES ($1, 'hash', 'key') RETURNING id::text", email
    )
    return user_id


async def acting(db: asyncpg.Connection, device: str | None = DEVICE) -> asyncpg.transaction.Transaction:
    """Open a transaction that names the acting device, as the API does."""
    tx = db.transaction()
    await tx.start()
    if device is not None:
        await db.execute("SELECT set_config('pgwarden.device_identifier', $1, true)", device)
    return tx


async def revision(db: asyncpg.Connection, user_id: str) -> datetime:
    return await db.fetchval("SELECT revision_date FROM pgwarden_user_revisions(ARRAY[$1::uuid])", uuid.UUID(user_id))


async def insert_cipher(db: asyncpg.Connection, user_id: str, folder: str | None = None) -> str:
    folders = json.dumps({user_id: folder} if folder else {})
    return await db.fetchval(
        "INSERT INTO ciphers (user_id, type, data, folders) VALUES ($1, 1, '{\"name\": \"2.x|y|z\"}', $2)"
        " RETURNING id::text",
        uuid.UUID(user_id),
        folders,
    )


async def insert_folder(db: asyncpg.Connection, user_id: str) -> str:
    return await db.fetchval(
        "INSERT INTO folders (user_id, name) VALUES ($1, '2.f|o|l') RETURNING id::text", uuid.UUID(user_id)
    )


# --- one operation, one event, after commit -------------------------------------------------


async def test_cipher_create_is_one_event_after_commit(db: asyncpg.Connection, events: EventListener) -> None:
    user = await new_user(db)
    tx = await acting(db)
    cipher = await insert_cipher(db, user)
    await events.nothing()  # not before COMMIT
    await tx.commit()

    [event] = await events.exactly(1)
    stored = await db.fetchval("SELECT revision_date FROM ciphers WHERE id = $1", uuid.UUID(cipher))
    assert event.type is PushType.SYNC_CIPHER_CREATE
    assert (event.user_id, event.org_id, event.item_id, event.device_identifier) == (user, None, cipher, DEVICE)
    assert event.date == stored


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ("UPDATE ciphers SET data = '{\"name\": \"2.new|y|z\"}' WHERE id = $1", PushType.SYNC_CIPHER_UPDATE),
        ("UPDATE ciphers SET deleted_date = now() WHERE id = $1", PushType.SYNC_CIPHER_UPDATE),
        ("UPDATE ciphers SET deleted_date = NULL WHERE id = $1", PushType.SYNC_CIPHER_UPDATE),
        ("UPDATE ciphers SET favorites = jsonb_build_object(user_id::text, true) WHERE id = $1",
         PushType.SYNC_CIPHER_UPDATE),
        ("DELETE FROM ciphers WHERE id = $1", PushType.SYNC_LOGIN_DELETE),
    ],
    ids=["edit", "soft-delete", "restore", "favorite", "hard-delete"],
)
async def test_cipher_change_is_one_event_of_its_type(
    db: asyncpg.Connection, events: EventListener, statement: str, expected: PushType
) -> None:
    user = await new_user(db)
    cipher = await insert_cipher(db, user)
    await events.exactly(1)
    before = await revision(db, user)

    tx = await acting(db)
    await db.execute(statement, uuid.UUID(cipher))
    await tx.commit()

    [event] = await events.exactly(1)
    assert event.type is expected
    assert (event.user_id, event.item_id, event.device_identifier) == (user, cipher, DEVICE)
    assert await revision(db, user) > before


@pytest.mark.parametrize("table", ["ciphers", "folders"])
async def test_inserted_row_is_stamped_now_whatever_date_it_brings(db: asyncpg.Connection, table: str) -> None:
    user = await new_user(db)
    columns = "type, data" if table == "ciphers" else "name"
    values = "1, '{}'" if table == "ciphers" else "'f'"
    stamped, clock = await db.fetchrow(
        f"INSERT INTO {table} (user_id, {columns}, revision_date) VALUES ($1, {values}, '2001-01-01')"
        " RETURNING revision_date, clock_timestamp()", uuid.UUID(user))
    assert abs((clock - stamped).total_seconds()) < 1 and stamped.microsecond % 1000 == 0


async def test_cipher_edit_moves_its_revision_date_forward(db: asyncpg.Connection, events: EventListener) -> None:
    user = await new_user(db)
    cipher = await insert_cipher(db, user)
    created = await events.next()
    stored = await db.fetchval(
        "UPDATE ciphers SET reprompt = 1 WHERE id = $1 RETURNING revision_date", uuid.UUID(cipher))
    updated = await events.next()
    assert updated.date > created.date
    assert updated.date == stored


async def test_move_to_folder_is_a_cipher_update(db: asyncpg.Connection, events: EventListener) -> None:
    user = await new_user(db)
    folder = await insert_folder(db, user)
    cipher = await insert_cipher(db, user)
    await events.exactly(2)

    await db.execute(
        "UPDATE ciphers SET folders = jsonb_build_object($2::text, $3::text) WHERE id = $1",
        uuid.UUID(cipher), user, folder,
    )
    [event] = await events.exactly(1)
    assert (event.type, event.item_id) == (PushType.SYNC_CIPHER_UPDATE, cipher)


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ("UPDATE folders SET name = '2.new|o|l' WHERE id = $1", PushType.SYNC_FOLDER_UPDATE),
        ("DELETE FROM folders WHERE id = $1", PushType.SYNC_FOLDER_DELETE),
    ],
    ids=["rename", "delete"],
)
async def test_folder_change_is_one_event_of_its_type(
    db: asyncpg.Connection, events: EventListener, statement: str, expected: PushType
) -> None:
    user = await new_user(db)
    tx = await acting(db)
    folder = await insert_folder(db, user)
    await tx.commit()
    [created] = await events.exactly(1)
    assert (created.type, created.item_id, created.device_identifier) == (PushType.SYNC_FOLDER_CREATE, folder, DEVICE)

    tx = await acting(db)
    await db.execute(statement, uuid.UUID(folder))
    await tx.commit()
    [event] = await events.exactly(1)
    assert (event.type, event.user_id, event.item_id, event.device_identifier) == (expected, user, folder, DEVICE)


async def test_deleting_a_folder_makes_its_items_folderless(db: asyncpg.Connection, events: EventListener) -> None:
    user = await new_user(db)
    folder = await insert_folder(db, user)
    cipher = await insert_cipher(db, user, folder=folder)
    other = await insert_cipher(db, user)
    await events.exactly(3)

    await db.execute("DELETE FROM folders WHERE id = $1", uuid.UUID(folder))

    deleted, moved = await events.exactly(2)
    assert (deleted.type, deleted.item_id) == (PushType.SYNC_FOLDER_DELETE, folder)
    assert (moved.type, moved.item_id) == (PushType.SYNC_CIPHER_UPDATE, cipher)
    placements = dict(await db.fetch("SELECT id::text, folders FROM ciphers"))
    assert placements == {cipher: "{}", other: "{}"}


@pytest.mark.parametrize("push_type", [PushType.SYNC_VAULT, PushType.SYNC_SETTINGS, PushType.LOG_OUT])
async def test_sync_row_publishes_its_own_type(
    db: asyncpg.Connection, events: EventListener, push_type: PushType
) -> None:
    user = await new_user(db)
    before = await revision(db, user)
    tx = await acting(db)
    await db.execute("INSERT INTO sync_events (user_id, push_type) VALUES ($1, $2)", uuid.UUID(user), push_type)
    await tx.commit()

    [event] = await events.exactly(1)
    assert (event.type, event.user_id, event.item_id, event.device_identifier) == (push_type, user, None, DEVICE)
    assert await revision(db, user) > before


async def test_sync_row_with_explicit_null_context(db: asyncpg.Connection, events: EventListener) -> None:
    """An admin deauthorizing sessions: LogOut for every device, the acting one included."""
    user = await new_user(db)
    tx = await acting(db)
    await db.execute(
        "INSERT INTO sync_events (user_id, push_type, device_identifier) VALUES ($1, 11, NULL)", uuid.UUID(user)
    )
    await tx.commit()
    [event] = await events.exactly(1)
    assert (event.type, event.device_identifier) == (PushType.LOG_OUT, None)


async def test_old_sync_rows_are_pruned(db: asyncpg.Connection, events: EventListener) -> None:
    user = await new_user(db)
    await db.execute(
        "INSERT INTO sync_events (user_id, push_type, created_at) VALUES ($1, 5, now() - interval '40 days')",
        uuid.UUID(user),
    )
    await db.execute("INSERT INTO sync_events (user_id, push_type) VALUES ($1, 10)", uuid.UUID(user))
    assert await db.fetchval("SELECT array_agg(push_type) FROM sync_events") == [10]


# --- transactions ---------------------------------------------------------------------------


async def test_rollback_publishes_nothing_and_keeps_revision(db: asyncpg.Connection, events: EventListener) -> None:
    user = await new_user(db)
    before = await revision(db, user)
    tx = await acting(db)
    await insert_folder(db, user)
    await insert_cipher(db, user)
    await db.execute("INSERT INTO sync_events (user_id, push_type) VALUES ($1, 11)", uuid.UUID(user))
    await tx.rollback()

    await events.nothing(within=0.5)
    assert await revision(db, user) == before


async def test_plain_sql_session_notifies_with_null_context(db: asyncpg.Connection, events: EventListener) -> None:
    user = await new_user(db)
    cipher = await insert_cipher(db, user)  # autocommit, no set_config: an admin's psql
    [event] = await events.exactly(1)
    assert (event.item_id, event.device_identifier) == (cipher, None)


async def test_context_is_transaction_local(db: asyncpg.Connection, events: EventListener) -> None:
    user = await new_user(db)
    tx = await acting(db)
    await insert_folder(db, user)
    await tx.commit()
    await insert_folder(db, user)  # a later transaction on the same session names no device
    first, second = await events.exactly(2)
    assert (first.device_identifier, second.device_identifier) == (DEVICE, None)


async def test_oversized_context_is_published_as_null(db: asyncpg.Connection, events: EventListener) -> None:
    user = await new_user(db)
    tx = await acting(db, device="d" * 10_000)
    await insert_folder(db, user)
    await tx.commit()
    [event] = await events.exactly(1)
    assert event.device_identifier is None


async def test_every_user_has_a_revision_date_from_the_start(db: asyncpg.Connection) -> None:
    users = await db.fetch(
        "INSERT INTO users (email, password_hash, key) SELECT n || '@example.com', 'hash', 'key'"
        " FROM generate_series(1, 3) n RETURNING id, created_at")
    dates = dict(await db.fetch("SELECT user_id, revision_date FROM pgwarden_user_revisions($1::uuid[])",
                                [user["id"] for user in users]))
    assert dates == {user["id"]: user["created_at"].replace(microsecond=user["created_at"].microsecond // 1000 * 1000)
                     for user in users}
    await db.execute("DELETE FROM users WHERE id = $1", users[0]["id"])
    assert await db.fetchval("SELECT count(*) FROM user_revisions WHERE user_id = $1", users[0]["id"]) == 0


async def test_revision_date_moves_forward_with_every_change(db: asyncpg.Connection, events: EventListener) -> None:
    user = await new_user(db)
    seen = [await revision(db, user)]
    folder = await insert_folder(db, user)
    seen.append(await revision(db, user))
    cipher = await insert_cipher(db, user, folder=folder)
    seen.append(await revision(db, user))
    for statement in (
        "UPDATE ciphers SET reprompt = 1 WHERE id = $1",
        "UPDATE ciphers SET deleted_date = now() WHERE id = $1",
        "DELETE FROM ciphers WHERE id = $1",
    ):
        await db.execute(statement, uuid.UUID(cipher))
        seen.append(await revision(db, user))
    await db.execute("DELETE FROM folders WHERE id = $1", uuid.UUID(folder))
    seen.append(await revision(db, user))
    assert seen == sorted(seen) and len(set(seen)) == len(seen)
    await events.exactly(6)


# --- statement granularity ------------------------------------------------------------------


async def test_import_like_insert_is_one_sync_vault(db: asyncpg.Connection, events: EventListener) -> None:
    user = await new_user(db)
    tx = await acting(db)
    # an import writes folders and items in separate statements: still one SyncVault
    await db.execute(
        "INSERT INTO folders (user_id, name) SELECT $1, 'f' || n FROM generate_series(1, 20) n", uuid.UUID(user)
    )
    await db.execute(
        "INSERT INTO ciphers (user_id, type, data) SELECT $1, 1, '{}' FROM generate_series(1, 500)",
        uuid.UUID(user),
    )
    await tx.commit()
    [event] = await events.exactly(1)
    assert (event.type, event.user_id, event.item_id, event.device_identifier) == (PushType.SYNC_VAULT, user, None, DEVICE)


async def test_bulk_transaction_publishes_bulk_events_only(db: asyncpg.Connection, events: EventListener) -> None:
    """An import of a single item is still an import: one SyncVault, no item event."""
    user = await new_user(db)
    tx = await acting(db)
    await db.execute("SELECT set_config('pgwarden.bulk', 'on', true)")
    await insert_folder(db, user)
    await insert_cipher(db, user)
    await tx.commit()
    [event] = await events.exactly(1)
    assert (event.type, event.item_id, event.device_identifier) == (PushType.SYNC_VAULT, None, DEVICE)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ciphers SET folders = '{}' WHERE user_id = ANY($1::uuid[])",
        "UPDATE ciphers SET deleted_date = now() WHERE user_id = ANY($1::uuid[])",
        "DELETE FROM ciphers WHERE user_id = ANY($1::uuid[])",
    ],
    ids=["bulk-move", "bulk-soft-delete", "bulk-delete"],
)
async def test_bulk_statement_is_one_sync_ciphers_per_user(
    db: asyncpg.Connection, events: EventListener, statement: str
) -> None:
    users = sorted([await new_user(db), await new_user(db)])
    bystander = await new_user(db)
    for user in [*users, bystander]:
        for _ in range(3):
            await insert_cipher(db, user)
    await events.exactly(9)

    await db.execute(statement, users)

    received = await events.exactly(2)
    assert sorted(e.user_id for e in received) == users
    assert {(e.type, e.item_id) for e in received} == {(PushType.SYNC_CIPHERS, None)}


async def test_statement_touching_nothing_publishes_nothing(db: asyncpg.Connection, events: EventListener) -> None:
    user = await new_user(db)
    before = await revision(db, user)
    await db.execute("UPDATE ciphers SET reprompt = 1 WHERE user_id = $1", uuid.UUID(user))
    await db.execute("DELETE FROM folders WHERE user_id = $1", uuid.UUID(user))
    await events.nothing()
    assert await revision(db, user) == before


async def test_item_changing_owner_is_deleted_for_one_and_created_for_the_other(
    db: asyncpg.Connection, events: EventListener
) -> None:
    giver, taker = await new_user(db), await new_user(db)
    cipher = await insert_cipher(db, giver)
    await events.exactly(1)
    await db.execute("UPDATE ciphers SET user_id = $2 WHERE id = $1", uuid.UUID(cipher), uuid.UUID(taker))
    received = {(e.user_id, e.type) for e in await events.exactly(2)}
    assert received == {(giver, PushType.SYNC_LOGIN_DELETE), (taker, PushType.SYNC_CIPHER_CREATE)}


async def test_items_swapping_owners_in_one_statement_are_two_changes_for_each(
    db: asyncpg.Connection, events: EventListener
) -> None:
    first, second = sorted([await new_user(db), await new_user(db)])
    one, other = await insert_cipher(db, first), await insert_cipher(db, second)
    await events.exactly(2)
    await db.execute(
        "UPDATE ciphers SET user_id = CASE WHEN user_id = $1 THEN $2 ELSE $1 END WHERE id = ANY($3::uuid[])",
        uuid.UUID(first), uuid.UUID(second), [uuid.UUID(one), uuid.UUID(other)],
    )
    received = await events.exactly(2)
    assert [(e.user_id, e.type, e.item_id) for e in received] == [
        (first, PushType.SYNC_CIPHERS, None), (second, PushType.SYNC_CIPHERS, None)]


async def test_bulk_edit_after_single_edits_on_one_connection_stays_linear(
    db: asyncpg.Connection, events: EventListener
) -> None:
    """A trigger's plan cached for one-row statements must not make a bulk statement quadratic."""
    user = await new_user(db)
    await db.execute(
        "INSERT INTO ciphers (user_id, type, data) SELECT $1, 1, '{}' FROM generate_series(1, 10000)", uuid.UUID(user))
    cipher = await insert_cipher(db, user)
    for _ in range(10):
        await db.execute("UPDATE ciphers SET reprompt = 1 - reprompt WHERE id = $1", uuid.UUID(cipher))
    await events.exactly(12)

    started = time.perf_counter()
    await db.execute("UPDATE ciphers SET reprompt = 1 WHERE user_id = $1", uuid.UUID(user))
    # about 0.2 s; with a nested loop over the transition tables (migration 0003) about 30 s
    assert time.perf_counter() - started < 5
    [event] = await events.exactly(1)
    assert (event.type, event.user_id) == (PushType.SYNC_CIPHERS, user)


async def test_payload_stays_small_whatever_the_data(db: asyncpg.Connection) -> None:
    """Encrypted data can be megabytes; the event never carries it."""
    user = await new_user(db)
    payloads: list[str] = []
    await db.add_listener("pgwarden_events", lambda *args: payloads.append(args[3]))
    await db.execute(
        "INSERT INTO ciphers (user_id, type, data) VALUES ($1, 1, jsonb_build_object('notes', repeat('x', 2000000)))",
        uuid.UUID(user),
    )
    await db.execute("SELECT 1")  # let the notification arrive on this connection
    assert len(payloads) == 1 and len(payloads[0].encode()) < 1000


# --- an organization's items: events that name their collections ---------------------------


async def new_org(db: asyncpg.Connection, collections: int) -> tuple[str, list[str]]:
    org = await db.fetchval("INSERT INTO organizations (name, billing_email) VALUES ('O', 'o@x') RETURNING id::text")
    made = [await db.fetchval("INSERT INTO collections (organization_id, name) VALUES ($1, 'c') RETURNING id::text",
                              uuid.UUID(org)) for _ in range(collections)]
    return org, made


async def test_shared_item_is_deleted_for_its_owner_and_created_in_its_collections(
        db: asyncpg.Connection, events: EventListener) -> None:
    owner = await new_user(db)
    org, (a, b) = await new_org(db, 2)
    cipher = await insert_cipher(db, owner)
    await events.exactly(1)
    await db.execute("UPDATE ciphers SET user_id = NULL, organization_id = $2, collection_ids = $3 WHERE id = $1",
                     uuid.UUID(cipher), uuid.UUID(org), [uuid.UUID(b)])
    gone, created = await events.exactly(2)
    assert (gone.type, gone.user_id, gone.collections) == (PushType.SYNC_LOGIN_DELETE, owner, None)
    assert (created.type, created.user_id, created.org_id, created.item_id, created.collections,
            created.moved_from) == (PushType.SYNC_CIPHER_CREATE, None, org, cipher, (b,), None)


async def test_org_item_update_names_the_collections_it_left_only_when_they_changed(
        db: asyncpg.Connection, events: EventListener) -> None:
    org, (a, b, c) = await new_org(db, 3)
    item = await db.fetchval("INSERT INTO ciphers (organization_id, collection_ids, type, data) VALUES ($1, $2, 1, '{}')"
                             " RETURNING id::text", uuid.UUID(org), [uuid.UUID(a), uuid.UUID(b)])
    assert set((await events.next()).collections) == {a, b}
    await db.execute("UPDATE ciphers SET data = '{\"x\": 1}' WHERE id = $1", uuid.UUID(item))
    edited = await events.next()
    assert (edited.type, set(edited.collections), edited.moved_from) == (PushType.SYNC_CIPHER_UPDATE, {a, b}, None)
    await db.execute("UPDATE ciphers SET collection_ids = $2 WHERE id = $1", uuid.UUID(item), [uuid.UUID(c)])
    moved = await events.next()
    assert (moved.collections, set(moved.moved_from)) == ((c,), {a, b})
    await db.execute("DELETE FROM ciphers WHERE id = $1", uuid.UUID(item))
    deleted = await events.next()
    assert (deleted.type, deleted.collections) == (PushType.SYNC_LOGIN_DELETE, (c,))


async def test_org_bulk_event_names_every_collection_its_items_were_or_are_in(
        db: asyncpg.Connection, events: EventListener) -> None:
    org, (a, b, c) = await new_org(db, 3)
    await db.execute("INSERT INTO ciphers (organization_id, collection_ids, type, data) VALUES"
                     " ($1, $2, 1, '{}'), ($1, $3, 1, '{}')", uuid.UUID(org), [uuid.UUID(a)], [uuid.UUID(b)])
    imported = await events.next()
    assert (imported.type, imported.item_id, set(imported.collections)) == (PushType.SYNC_VAULT, None, {a, b})
    await db.execute("UPDATE ciphers SET collection_ids = $2 WHERE organization_id = $1", uuid.UUID(org),
                     [uuid.UUID(c)])
    moved = await events.next()
    assert (moved.type, set(moved.collections), moved.moved_from) == (PushType.SYNC_CIPHERS, {a, b, c}, None)


async def test_org_item_change_moves_one_organization_row_and_no_member_row(db: asyncpg.Connection,
                                                                            events: EventListener) -> None:
    org, (a,) = await new_org(db, 1)
    members = [await new_user(db) for _ in range(3)]
    for member in members:
        await db.execute("INSERT INTO memberships (organization_id, user_id, type, status, key)"
                         " VALUES ($1, $2, 0, 2, 'k')", uuid.UUID(org), uuid.UUID(member))
    own = await db.fetch("SELECT * FROM user_revisions ORDER BY user_id")
    before = await db.fetchval("SELECT revision_date FROM organization_revisions")
    await db.execute("INSERT INTO ciphers (organization_id, collection_ids, type, data) VALUES ($1, $2, 1, '{}')",
                     uuid.UUID(org), [uuid.UUID(a)])
    await events.exactly(1)
    after = await db.fetchval("SELECT revision_date FROM organization_revisions")
    assert after > before
    assert await db.fetch("SELECT * FROM user_revisions ORDER BY user_id") == own
    for member in members:
        assert await revision(db, member) == after


@pytest.mark.parametrize("joins", ["as a member", "by taking an invitation"])
async def test_own_change_moves_past_an_organization_joined_by_any_writer(
        db: asyncpg.Connection, events: EventListener, joins: str) -> None:
    """A membership written in SQL counts too: the user's next own change moves past the organization's date."""
    user = await new_user(db)
    org, _ = await new_org(db, 0)
    await insert_cipher(db, user)  # the user's date moved while in no organization
    await events.exactly(1)
    if joins == "as a member":
        await db.execute("INSERT INTO memberships (organization_id, user_id, type, status, key)"
                         " VALUES ($1, $2, 2, 2, 'k')", uuid.UUID(org), uuid.UUID(user))
    else:
        invited = await db.fetchval("INSERT INTO memberships (organization_id, email, type, status)"
                                    " VALUES ($1, 'invited@example.com', 2, 0) RETURNING id", uuid.UUID(org))
        await db.execute("UPDATE memberships SET user_id = $2, email = NULL, status = 2, key = 'k' WHERE id = $1",
                         invited, uuid.UUID(user))
    # an organization's date ahead of the clock, as a burst of changes in one millisecond leaves it
    ahead = await db.fetchval("UPDATE organization_revisions SET revision_date = now() + interval '1 hour'"
                              " WHERE organization_id = $1 RETURNING revision_date", uuid.UUID(org))
    await insert_cipher(db, user)
    await events.exactly(1)
    assert await db.fetchval("SELECT revision_date FROM user_revisions WHERE user_id = $1", uuid.UUID(user)) > ahead
    assert await revision(db, user) > ahead
