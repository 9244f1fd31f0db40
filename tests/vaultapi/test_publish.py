"""The write side of the event contract, against the real triggers: each call, its one event."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest

from db.events import PushType
from tests.support.listen import EventListener
from tests.vaultapi.conftest import assert_event
from vaultapi import publish
from vaultapi.database import open_pool

DEVICE = "5b1c0a8e-phone"


class _Refused(Exception):
    pass


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await open_pool(database_url)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
async def user(db: asyncpg.Connection) -> uuid.UUID:
    return await db.fetchval(
        "INSERT INTO users (email, password_hash, key) VALUES ('alice@example.com', 'x', 'k') RETURNING id")


async def _add_folder(conn: asyncpg.Connection, user_id: uuid.UUID) -> uuid.UUID:
    return await conn.fetchval("INSERT INTO folders (user_id, name) VALUES ($1, 'n') RETURNING id", user_id)


async def test_write_names_the_acting_device_in_trigger_events(pool, user, events: EventListener) -> None:
    async with publish.write(pool, DEVICE) as conn:
        folder = await _add_folder(conn, user)
    assert_event((await events.exactly(1))[0], PushType.SYNC_FOLDER_CREATE, str(user), str(folder), DEVICE)


@pytest.mark.parametrize("push_type", [PushType.SYNC_SETTINGS, PushType.SYNC_VAULT, PushType.SYNC_CIPHERS])
async def test_user_event_publishes_its_type_as_the_acting_device(pool, user, events, push_type) -> None:
    async with publish.write(pool, DEVICE) as conn:
        await publish.user_event(conn, user, push_type)
    assert_event((await events.exactly(1))[0], push_type, str(user), None, DEVICE)


async def test_user_event_without_a_device_names_none(pool, user, events: EventListener) -> None:
    async with publish.write(pool, None) as conn:
        await publish.user_event(conn, user, PushType.SYNC_SETTINGS)
    assert_event((await events.exactly(1))[0], PushType.SYNC_SETTINGS, str(user), None, None)


async def test_user_event_refuses_a_log_out(pool, user, events: EventListener, db) -> None:
    with pytest.raises(ValueError, match="log_out"):
        async with publish.write(pool, DEVICE) as conn:
            await publish.user_event(conn, user, PushType.LOG_OUT)
    await events.nothing()
    assert await db.fetchval("SELECT count(*) FROM sync_events") == 0


async def test_log_out_other_devices_names_the_acting_device(pool, user, events: EventListener) -> None:
    async with publish.write(pool, DEVICE) as conn:
        await publish.log_out_other_devices(conn, user)
    assert_event((await events.exactly(1))[0], PushType.LOG_OUT, str(user), None, DEVICE)


async def test_log_out_other_devices_with_an_overlong_identifier_names_none(pool, user, events) -> None:
    # too long to publish: the event goes out, naming no device, as the triggers' own events do
    async with publish.write(pool, "d" * 256) as conn:
        await publish.log_out_other_devices(conn, user)
    assert_event((await events.exactly(1))[0], PushType.LOG_OUT, str(user), None, None)


async def test_log_out_all_devices_names_no_device(pool, user, events: EventListener) -> None:
    async with publish.write(pool, DEVICE) as conn:
        await publish.log_out_all_devices(conn, user)
    assert_event((await events.exactly(1))[0], PushType.LOG_OUT, str(user), None, None)


async def test_mark_bulk_change_turns_one_item_into_a_sync_vault(pool, user, events: EventListener) -> None:
    async with publish.write(pool, DEVICE) as conn:
        await publish.mark_bulk_change(conn)
        await _add_folder(conn, user)
    assert_event((await events.exactly(1))[0], PushType.SYNC_VAULT, str(user), None, DEVICE)


async def test_device_and_bulk_flag_end_with_their_transaction(user, database_url: str, events) -> None:
    # one connection, so the second write runs where the first one set both
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    try:
        async with publish.write(pool, DEVICE) as conn:
            await publish.mark_bulk_change(conn)
            first_backend = conn.get_server_pid()
        async with publish.write(pool, None) as conn:
            assert conn.get_server_pid() == first_backend
            folder = await _add_folder(conn, user)
    finally:
        await pool.close()
    assert_event((await events.exactly(1))[0], PushType.SYNC_FOLDER_CREATE, str(user), str(folder), None)


_CALLS: dict[str, Callable[[asyncpg.Connection, uuid.UUID], Awaitable[object]]] = {
    "user_event": lambda conn, user: publish.user_event(conn, user, PushType.SYNC_SETTINGS),
    "log_out_other_devices": publish.log_out_other_devices,
    "log_out_all_devices": publish.log_out_all_devices,
    "bulk change": lambda conn, user: _bulk_folder(conn, user),
}


async def _bulk_folder(conn: asyncpg.Connection, user_id: uuid.UUID) -> None:
    await publish.mark_bulk_change(conn)
    await _add_folder(conn, user_id)


@pytest.mark.parametrize("call", list(_CALLS))
async def test_rolled_back_write_publishes_nothing(pool, user, events: EventListener, db, call: str) -> None:
    with pytest.raises(_Refused):
        async with publish.write(pool, DEVICE) as conn:
            await _CALLS[call](conn, user)
            raise _Refused
    await events.nothing()
    assert await db.fetchval("SELECT (SELECT count(*) FROM sync_events) + (SELECT count(*) FROM folders)") == 0
