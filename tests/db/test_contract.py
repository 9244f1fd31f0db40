"""The event contract has one source, PushType; every other copy must agree with it.

Checked against the migrated database (the SQL functions, the CHECK constraints, the trigger
functions' text), against db/sql/events.sql, against the hub's payloads, against the decoder,
and against protocol.md section 1 (transcribed below: the one copy a test may hold).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import datetime, timezone
from pathlib import Path

import asyncpg
import pytest

from db import routines
from db.events import (
    CHANNEL,
    MAX_DEVICE_IDENTIFIER_LENGTH,
    Event,
    EventError,
    Hub,
    Payload,
    PushType,
    Status,
    decode_event,
)
from tests.support.listen import EventListener
from wshub.notifications import payload, receive_message_argument

ROOT = Path(__file__).resolve().parents[2]

# protocol.md section 1: the push types the official clients know, and the payload table.
DOCUMENTED_NAMES = [
    "SyncCipherUpdate", "SyncCipherCreate", "SyncLoginDelete", "SyncFolderDelete", "SyncCiphers",
    "SyncVault", "SyncOrgKeys", "SyncFolderCreate", "SyncFolderUpdate", "SyncCipherDelete",
    "SyncSettings", "LogOut", "SyncSendCreate", "SyncSendUpdate", "SyncSendDelete", "AuthRequest",
    "AuthRequestResponse", "SyncOrganizations", "SyncOrganizationStatusChanged",
    "SyncOrganizationCollectionSettingChanged", "Notification", "NotificationStatus",
    "RefreshSecurityTasks", "OrganizationBankAccountVerified", "ProviderBankAccountVerified",
    "PolicyChanged", "AutoConfirm", "PremiumStatusChanged",
]
DOCUMENTED_KEYS = {
    Payload.CIPHER: ["Id", "UserId", "OrganizationId", "CollectionIds", "RevisionDate"],
    Payload.FOLDER: ["Id", "UserId", "RevisionDate"],
    Payload.USER: ["UserId", "Date"],
    Payload.SEND: ["Id", "UserId", "RevisionDate"],
    Payload.AUTH_REQUEST: ["Id", "UserId"],
}
DOCUMENTED_SHAPES = {
    Payload.CIPHER: {0, 1, 2, 9},
    Payload.FOLDER: {3, 7, 8},
    Payload.USER: {4, 5, 6, 10, 11},
    Payload.SEND: {12, 13, 14},
    Payload.AUTH_REQUEST: {15, 16},  # 16: the anonymous hub's Payload {Id, UserId}
}
BILLING = {23, 24}

USER = "8e6d2f1a-3b4c-4d5e-8f6a-7b8c9d0e1f2a"
ITEM = "0b7c1c3e-2f4a-4b8e-9d3f-6a5e4c3b2a10"
NAMED = re.compile(r"pgwarden_push_type\('(\w+)'\)")


def _event(push_type: PushType) -> Event:
    item = ITEM if push_type.names_item else None
    return Event(push_type, USER, None, item, datetime(2025, 11, 28, 16, tzinfo=timezone.utc), "device-1")


# --- the table itself -----------------------------------------------------------------------


def test_push_types_are_every_type_the_clients_know_by_their_names() -> None:
    snake = [re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper() for name in DOCUMENTED_NAMES]
    assert [(int(t), t.name) for t in PushType] == list(enumerate(snake))


@pytest.mark.parametrize("push_type", list(PushType), ids=lambda t: t.name)
def test_every_push_type_has_coherent_metadata(push_type: PushType) -> None:
    assert push_type.payload is None or isinstance(push_type.payload, Payload)
    assert isinstance(push_type.status, Status) and isinstance(push_type.hubs, Hub) and push_type.hubs
    if int(push_type) in BILLING:
        assert (push_type.status, push_type.sources, push_type.payload) == (Status.NEVER, frozenset(), None)
    else:
        assert push_type.status is not Status.NEVER and push_type.sources
    if push_type.status is Status.PRODUCED:
        assert push_type.deliverable
    if Hub.ANONYMOUS in push_type.hubs:
        # the anonymous hub finds its listener by the auth request id the event names
        assert push_type.payload is Payload.AUTH_REQUEST


def test_payload_shapes_are_the_documented_ones() -> None:
    for shape, numbers in DOCUMENTED_SHAPES.items():
        assert {int(t) for t in PushType if t.payload is shape} >= numbers, shape
    assert {int(t) for t in PushType if Hub.ANONYMOUS in t.hubs} == {16}


# --- the hub's side -------------------------------------------------------------------------


@pytest.mark.parametrize("push_type", list(PushType), ids=lambda t: t.name)
def test_hub_payload_has_the_documented_keys(push_type: PushType) -> None:
    if push_type.payload is None:
        with pytest.raises(ValueError):
            payload(_event(push_type))
        return
    built = payload(_event(push_type))
    assert list(built) == DOCUMENTED_KEYS[push_type.payload]
    assert built["UserId"] == USER and built.get("Id", ITEM) == ITEM
    assert receive_message_argument(_event(push_type))["ContextId"] == "device-1"


# --- the SQL side ---------------------------------------------------------------------------


async def test_sql_constants_are_the_python_ones(db: asyncpg.Connection) -> None:
    assert await db.fetchval("SELECT pgwarden_channel()") == CHANNEL
    assert await db.fetchval("SELECT pgwarden_device_identifier_limit()") == MAX_DEVICE_IDENTIFIER_LENGTH
    numbers = await db.fetch("SELECT name, pgwarden_push_type(name) AS number FROM unnest($1::text[]) name",
                             [t.sql_name for t in PushType])
    assert {row["name"]: row["number"] for row in numbers} == {t.sql_name: int(t) for t in PushType}
    with pytest.raises(asyncpg.RaiseError, match="unknown push type name"):
        await db.fetchval("SELECT pgwarden_push_type('sync_cipher_updated')")


async def test_sync_events_constraints_are_the_python_ones(db: asyncpg.Connection) -> None:
    definitions = dict(await db.fetch(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = 'sync_events'::regclass AND contype = 'c'"))
    allowed = re.search(r"ARRAY\[([\d, ]+)\]", definitions.pop("sync_events_push_type_check"))
    assert allowed is not None
    assert sorted(int(n) for n in allowed.group(1).split(",")) == sorted(t for t in PushType if t.by_row)
    length = definitions.pop("sync_events_device_identifier_check")
    assert f"<= {MAX_DEVICE_IDENTIFIER_LENGTH}" in length
    assert definitions == {}


async def test_database_holds_exactly_the_routines_of_db_sql(db: asyncpg.Connection) -> None:
    """No routine left from an older migration, none changed behind db/sql's back."""
    text = routines.text()
    bodies = dict(re.findall(r"CREATE OR REPLACE FUNCTION (\w+)\(.*?\$\$(.*?)\$\$", text, re.S))
    stored = dict(await db.fetch(
        "SELECT proname, prosrc FROM pg_proc WHERE pronamespace = 'public'::regnamespace"
        " AND proname LIKE 'pgwarden\\_%'"))
    assert stored == bodies


async def test_trigger_functions_emit_exactly_the_produced_types_of_their_table(db: asyncpg.Connection) -> None:
    rows = await db.fetch(
        "SELECT c.relname AS table, p.prosrc AS source FROM pg_trigger t"
        " JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_proc p ON p.oid = t.tgfoid WHERE NOT t.tgisinternal")
    emitted: dict[str, set[str]] = {}
    for row in rows:
        emitted.setdefault(row["table"], set()).update(NAMED.findall(row["source"]))
    for table in ("ciphers", "folders", "sends"):
        expected = {t.sql_name for t in PushType if table in t.tables and t.status is Status.PRODUCED}
        assert emitted.get(table) == expected, table
    # sync_events passes the row's type through: the CHECK constraint is its list
    assert emitted.get("sync_events", set()) == set()


def test_db_sql_names_push_types_not_numbers() -> None:
    text = routines.events_sql()
    assert set(NAMED.findall(text)) <= {t.sql_name for t in PushType}
    # every ROW(...)::pgwarden_change and every bulk type is given by name
    assert not re.search(r"\b(id|NULL|now\(\)|revision_date),\s*\d+\s*,", text)
    assert not re.search(r"\),\s*\d+\);", text)
    assert "pgwarden_events" not in text and "255" not in text


def test_status_says_what_the_code_produces() -> None:
    """PRODUCED: a trigger function emits it, or the API inserts rows of it; else nothing does."""
    triggers = set(NAMED.findall(routines.events_sql()))
    api = "\n".join(path.read_text() for path in (ROOT / "vaultapi").rglob("*.py"))
    for push_type in PushType:
        by_trigger = push_type.sql_name in triggers
        by_api = re.search(rf"\bPushType\.{push_type.name}\b", api) is not None
        assert (by_trigger or by_api) == (push_type.status is Status.PRODUCED), push_type
        if by_trigger:
            assert push_type.tables & {"ciphers", "folders", "sends"}, push_type
        if by_api:
            assert push_type.by_row, push_type


def test_newest_migration_applying_the_routines_was_written_for_their_text() -> None:
    """Changing db/sql or the rendered contract needs a migration that applies it again."""
    from alembic.script import ScriptDirectory

    from db import migrate

    script = ScriptDirectory.from_config(migrate.alembic_config("postgresql://x@localhost/x"))
    newest = next(r for r in script.walk_revisions() if hasattr(r.module, "ROUTINES"))
    assert newest.module.ROUTINES == routines.fingerprint(), (
        f"db/sql or the push type table changed since migration {newest.revision}: add a migration"
        f" that calls routines.apply(op.execute) with ROUTINES = {routines.fingerprint()!r}")


async def test_routines_pass_with_bodies_checked(db: asyncpg.Connection) -> None:
    """Migrations apply them unchecked (see db/routines.py); here every body is validated."""
    tx = db.transaction()
    await tx.start()
    try:
        await db.execute("SET LOCAL check_function_bodies = on")
        await db.execute(routines.contract_sql())
        await db.execute(routines.events_sql())
        await db.execute(routines.organizations_sql())
        await db.execute(routines.files_sql())
    finally:
        await tx.rollback()


# --- from SQL to the decoder and the hub ----------------------------------------------------


async def test_every_published_type_decodes_and_the_others_are_refused(db: asyncpg.Connection) -> None:
    raw: asyncio.Queue[str] = asyncio.Queue()
    await db.add_listener(CHANNEL, lambda *args: raw.put_nowait(args[3]))
    for push_type in PushType:
        await db.execute(
            "SELECT pgwarden_notify(pgwarden_push_type($1), $2, NULL, $3, now(), 'device-1', NULL, NULL)",
            push_type.sql_name, uuid.UUID(USER), uuid.UUID(ITEM) if push_type.names_item else None)
        text = await asyncio.wait_for(raw.get(), 5)
        if push_type.deliverable:
            event = decode_event(text)
            assert (event.type, event.device_identifier) == (push_type, "device-1")
            assert set(payload(event)) == set(DOCUMENTED_KEYS[push_type.payload])
        else:
            with pytest.raises(EventError, match="without a payload shape"):
                decode_event(text)


async def test_sync_events_rows_publish_exactly_the_row_types(db: asyncpg.Connection, events: EventListener) -> None:
    user = await db.fetchval(
        "INSERT INTO users (email, password_hash, key) VALUES ('c@example.com', 'h', 'k') RETURNING id")
    for push_type in PushType:
        insert = db.execute("INSERT INTO sync_events (user_id, push_type, item_id) VALUES ($1, $2, $3)",
                            user, int(push_type), uuid.uuid4() if push_type.names_item else None)
        if push_type.by_row:
            await insert
            event = await events.next()
            assert event.type is push_type
            receive_message_argument(event)
        else:
            with pytest.raises(asyncpg.CheckViolationError):
                await insert
    await events.nothing()
