"""The write side of the event contract: the one place in the API that speaks the triggers' dialect.

Most events need no call here: the triggers on ciphers and folders publish every committed
change (db/migrations/versions/0002). What they cannot know comes from here:

- which device acts (``write``): every event of the transaction carries it, so that device
  does not react to its own change;
- that a transaction is a bulk change (``mark_bulk_change``): only SyncVault/SyncCiphers,
  never an item's event;
- events about a user rather than a row (``user_event``, ``log_out_other_devices``,
  ``log_out_all_devices``, ``log_out_device``): a row in sync_events, which its trigger publishes;
- login with device (``auth_request``, ``auth_request_answered``): a sync_events row naming the
  auth request, which the hub also routes to the device waiting for it on the anonymous hub;
- what changes in a member's organizations (``org_keys_changed``, ``access_changed``,
  ``organization_changed``): the memberships, collection grants and organizations have no
  trigger, so the API names the members.

Like every NOTIFY, these leave on COMMIT and never on ROLLBACK.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

import asyncpg

from db.events import PushType

__all__ = [
    "access_changed",
    "auth_request",
    "auth_request_answered",
    "log_out_all_devices",
    "log_out_device",
    "log_out_other_devices",
    "mark_bulk_change",
    "org_keys_changed",
    "organization_changed",
    "user_event",
    "write",
]

# The triggers' names for the acting device and the bulk flag, kept here and nowhere else.
_DEVICE_SETTING = "pgwarden.device_identifier"
_DEVICE_COLUMN = "device_identifier"
_BULK_SETTING = "pgwarden.bulk"


@asynccontextmanager
async def write(pool: asyncpg.Pool, device_identifier: str | None) -> AsyncIterator[asyncpg.Connection]:
    """One transaction whose events name device_identifier as the device that acted."""
    async with pool.acquire() as conn, conn.transaction():
        await _set_local(conn, _DEVICE_SETTING, device_identifier or "")
        yield conn


async def mark_bulk_change(conn: asyncpg.Connection) -> None:
    """However few rows this transaction writes, the triggers publish one bulk event per user."""
    await _set_local(conn, _BULK_SETTING, "on")


async def user_event(conn: asyncpg.Connection, user_id: uuid.UUID, push_type: PushType) -> None:
    """Publish an event about the user's whole account (SyncSettings, SyncVault...) as the acting device's."""
    if push_type == PushType.LOG_OUT:
        # a log-out must say whether the acting device is spared: use one of the two below
        raise ValueError("LogOut is published with log_out_other_devices or log_out_all_devices")
    await _add_event(conn, user_id, push_type)


async def log_out_other_devices(conn: asyncpg.Connection, user_id: uuid.UUID) -> None:
    """LogOut naming the acting device: every other session of the user ends."""
    await _add_event(conn, user_id, PushType.LOG_OUT)


async def log_out_all_devices(conn: asyncpg.Connection, user_id: uuid.UUID) -> None:
    """LogOut naming no device: every session of the user ends, the acting one's too."""
    await conn.execute(
        f"INSERT INTO sync_events (user_id, push_type, {_DEVICE_COLUMN}) VALUES ($1, $2, NULL)",
        user_id, PushType.LOG_OUT)


async def log_out_device(conn: asyncpg.Connection, user_id: uuid.UUID, device_id: uuid.UUID) -> None:
    """LogOut to one device of the user (the devices row it names), which the hub closes."""
    await _add_item_event(conn, user_id, PushType.LOG_OUT, device_id)


async def auth_request(conn: asyncpg.Connection, user_id: uuid.UUID, request_id: uuid.UUID) -> None:
    """AuthRequest to every signed-in device of the user: a device asks to log in."""
    await _add_item_event(conn, user_id, PushType.AUTH_REQUEST, request_id)


async def auth_request_answered(conn: asyncpg.Connection, user_id: uuid.UUID, request_id: uuid.UUID) -> None:
    """AuthRequestResponse: to the device waiting on the anonymous hub, and the user's devices."""
    await _add_item_event(conn, user_id, PushType.AUTH_REQUEST_RESPONSE, request_id)


async def org_keys_changed(conn: asyncpg.Connection, user_ids: Iterable[uuid.UUID]) -> None:
    """SyncOrgKeys to each user: an organization, or its key, came or went (created, confirmed,
    revoked, restored, removed, left, deleted). The clients sync at once, whatever the revision
    date says, and reconnect to the hub."""
    await _add_events(conn, user_ids, PushType.SYNC_ORG_KEYS)


async def access_changed(conn: asyncpg.Connection, user_ids: Iterable[uuid.UUID]) -> None:
    """SyncVault to each user: what the user reaches in an organization changed (a role, a
    collection granted, changed, taken away or deleted)."""
    await _add_events(conn, user_ids, PushType.SYNC_VAULT)


async def organization_changed(conn: asyncpg.Connection, user_ids: Iterable[uuid.UUID]) -> None:
    """SyncOrganizations to each user: what the clients show of an organization changed (its
    name). The clients sync at once, whatever the revision date says."""
    await _add_events(conn, user_ids, PushType.SYNC_ORGANIZATIONS)


# ---- private -------------------------------------------------------------------------------

async def _set_local(conn: asyncpg.Connection, setting: str, value: str) -> None:
    # is_local: the setting ends with the transaction, so a pooled connection carries nothing over
    await conn.execute("SELECT set_config($1, $2, true)", setting, value)


async def _add_event(conn: asyncpg.Connection, user_id: uuid.UUID, push_type: PushType) -> None:
    # the device column is left to its default, the acting device (null when it is too long)
    await conn.execute("INSERT INTO sync_events (user_id, push_type) VALUES ($1, $2)", user_id, push_type)


async def _add_item_event(conn: asyncpg.Connection, user_id: uuid.UUID, push_type: PushType,
                          item_id: uuid.UUID) -> None:
    await conn.execute("INSERT INTO sync_events (user_id, push_type, item_id) VALUES ($1, $2, $3)",
                       user_id, push_type, item_id)


async def _add_events(conn: asyncpg.Connection, user_ids: Iterable[uuid.UUID], push_type: PushType) -> None:
    # one statement: its trigger publishes one event per user
    users = sorted(set(user_ids))
    if users:
        await conn.execute("INSERT INTO sync_events (user_id, push_type) SELECT unnest($1::uuid[]), $2",
                           users, push_type)
