"""The devices table: one row per (user, device identifier), holding its refresh token.

A device's refresh token is one of a family that starts at a password login: each use swaps it
for the next one and extends its lifetime (sliding, like Bitwarden's). The device keeps the hashes
of the tokens it swapped away, so a replayed one shows that someone else holds a copy of the
family, and the device's current token is revoked: the client logs in again. A token also carries
the security stamp it was issued under and stops working when the account's stamp changes,
however that happens.

A deactivated device keeps its row, marked inactive: no refresh token, its access tokens refused
(core.access), gone from the account's list, and unknown to knowndevice, until it logs in again.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import asyncpg

from vaultapi import publish
from vaultapi.dates import iso

__all__ = [
    "REMEMBERED_TOKENS",
    "REUSE_GRACE",
    "RefreshRefused",
    "deactivate",
    "device_json",
    "exchange_refresh_token",
    "find",
    "is_known",
    "list_for_user",
    "revoke_refresh_tokens",
    "sign_in",
]

log = logging.getLogger(__name__)

#: swapped-away tokens remembered per device (a client refreshes every hour or two)
REMEMBERED_TOKENS = 8
#: seconds in which the token just swapped away may come again without revoking anything: a
#: client that sent two refreshes at once (two extension contexts, two CLI processes) lost a race
REUSE_GRACE = 10


class RefreshRefused(Exception):
    """Raised when a refresh token cannot be exchanged; ``reason`` is for the log only."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def sign_in(
    conn: asyncpg.Connection | asyncpg.Pool,
    user: asyncpg.Record,
    identifier: str,
    device_type: int,
    name: str,
    refresh_token_hash: str | None,
    lifetime: int,
) -> None:
    """Record a login from this device: a new token family replaces any it held before (none for
    an API key's login, which has no refresh token). The token carries the security stamp of
    `user` as read when the password was checked."""
    await conn.execute(
        """
        INSERT INTO devices (user_id, identifier, type, name, refresh_token_hash, refresh_token_expires_at,
                             refresh_token_stamp, refresh_token_issued_at)
        VALUES ($1, $2, $3, $4, $5,
                CASE WHEN $5::text IS NOT NULL THEN now() + $6::integer * interval '1 second' END,
                CASE WHEN $5::text IS NOT NULL THEN $7::uuid END, CASE WHEN $5::text IS NOT NULL THEN now() END)
        ON CONFLICT (user_id, identifier) DO UPDATE
           SET type = EXCLUDED.type, name = EXCLUDED.name, active = true,
               refresh_token_hash = EXCLUDED.refresh_token_hash,
               refresh_token_expires_at = EXCLUDED.refresh_token_expires_at,
               refresh_token_stamp = EXCLUDED.refresh_token_stamp,
               refresh_token_issued_at = EXCLUDED.refresh_token_issued_at,
               previous_refresh_token_hashes = '{}', updated_at = now()
        """,
        user["id"], identifier, device_type, name, refresh_token_hash, lifetime, user["security_stamp"],
    )


async def exchange_refresh_token(
    pool: asyncpg.Pool, old_hash: str, new_hash: str, lifetime: int
) -> tuple[asyncpg.Record, str]:
    """Swap a refresh token for the next of its family: the account (users row) and the device
    identifier. Refused when the token is unknown, expired, issued under another security stamp,
    or swapped away before (then the device's current token is revoked too)."""
    async with pool.acquire() as conn:
        async with conn.transaction():
            # the lock makes a token work once, however many replicas receive it at the same time
            found = await conn.fetchrow(
                """
                SELECT u.*, d.id AS device_id, d.identifier AS device_identifier,
                       d.refresh_token_expires_at <= now() AS expired,
                       d.refresh_token_stamp <> u.security_stamp AS outdated
                  FROM devices d JOIN users u ON u.id = d.user_id
                 WHERE d.refresh_token_hash = $1
                   FOR UPDATE OF d
                """,
                old_hash)
            if found is None:
                reason = "replayed" if await _revoke_replayed(conn, old_hash) else "unknown"
            elif found["expired"] or found["outdated"]:
                reason = "expired" if found["expired"] else "security stamp changed"
                await _revoke(conn, found["device_id"])
            else:
                await conn.execute(
                    """
                    UPDATE devices
                       SET refresh_token_hash = $2,
                           previous_refresh_token_hashes = (ARRAY[$3::text] || previous_refresh_token_hashes)[1:$4::integer],
                           refresh_token_expires_at = now() + $5::integer * interval '1 second',
                           refresh_token_issued_at = now(), updated_at = now()
                     WHERE id = $1
                    """,
                    found["device_id"], new_hash, old_hash, REMEMBERED_TOKENS, lifetime)
                return found, found["device_identifier"]
    # outside the transaction: a revocation above is committed before the refusal
    raise RefreshRefused(reason)


async def _revoke_replayed(conn: asyncpg.Connection, old_hash: str) -> bool:
    """Revoke the token of the device that swapped `old_hash` away, unless that was the last
    swap and it happened within REUSE_GRACE. Whether a device was revoked."""
    revoked = await conn.fetchrow(
        """
        UPDATE devices SET refresh_token_hash = NULL, previous_refresh_token_hashes = '{}', updated_at = now()
         WHERE previous_refresh_token_hashes @> ARRAY[$1::text]
           AND NOT (previous_refresh_token_hashes[1] = $1::text
                    AND refresh_token_issued_at > now() - $2::integer * interval '1 second')
        RETURNING id, user_id
        """,
        old_hash, REUSE_GRACE)
    if revoked is not None:
        log.warning("a swapped-away refresh token was used again: revoked the token of device %s of user %s",
                    revoked["id"], revoked["user_id"])
    return revoked is not None


async def _revoke(conn: asyncpg.Connection, device_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE devices SET refresh_token_hash = NULL, previous_refresh_token_hashes = '{}' WHERE id = $1",
        device_id)


async def revoke_refresh_tokens(conn: asyncpg.Connection, user_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE devices SET refresh_token_hash = NULL, previous_refresh_token_hashes = '{}' WHERE user_id = $1",
        user_id)


async def is_known(conn: asyncpg.Connection | asyncpg.Pool, email: str, identifier: str) -> bool:
    return await conn.fetchval(
        """
        SELECT EXISTS (SELECT 1 FROM devices d JOIN users u ON u.id = d.user_id
                        WHERE lower(u.email) = lower($1) AND d.identifier = $2 AND d.active)
        """,
        email.strip(), identifier,
    )


async def list_for_user(conn: asyncpg.Connection | asyncpg.Pool, user_id: uuid.UUID) -> list[asyncpg.Record]:
    """The account's active devices, with the newest pending auth request of each."""
    return await conn.fetch(
        """
        SELECT d.*, r.id AS pending_request_id, r.created_at AS pending_request_date
          FROM devices d
          LEFT JOIN LATERAL (SELECT id, created_at FROM auth_requests
                              WHERE user_id = d.user_id AND request_device_identifier = d.identifier
                                AND approved IS NULL AND created_at > now() - interval '15 minutes'
                              ORDER BY created_at DESC LIMIT 1) r ON true
         WHERE d.user_id = $1 AND d.active
         ORDER BY d.created_at
        """,
        user_id)


async def find(conn: asyncpg.Connection | asyncpg.Pool, user_id: uuid.UUID, *, device_id: uuid.UUID | None = None,
               identifier: str | None = None) -> asyncpg.Record | None:
    """One active device of the account, by its id or its identifier."""
    return await conn.fetchrow(
        "SELECT * FROM devices WHERE user_id = $1 AND active AND (id = $2 OR identifier = $3)",
        user_id, device_id, identifier)


async def deactivate(conn: asyncpg.Connection, user_id: uuid.UUID, device_id: uuid.UUID) -> bool:
    """End a device's sessions: its refresh token goes, its access tokens are refused from now
    on, and its hub connections close (a LogOut to it alone). Whether the account had it."""
    found = await conn.fetchval(
        """
        UPDATE devices SET active = false, refresh_token_hash = NULL, previous_refresh_token_hashes = '{}',
                           updated_at = now()
         WHERE id = $1 AND user_id = $2 AND active
        RETURNING id
        """,
        device_id, user_id)
    if found is not None:
        await publish.log_out_device(conn, user_id, device_id)
    return found is not None


def device_json(row: asyncpg.Record) -> dict[str, Any]:
    """A device as the clients read it (DeviceAuthRequestResponseModel). pgwarden has no
    trusted-device encryption: no device is trusted and none holds keys."""
    pending = None
    if row.get("pending_request_id") is not None:
        pending = {"id": str(row["pending_request_id"]), "creationDate": iso(row["pending_request_date"])}
    return {
        "id": str(row["id"]),
        "userId": str(row["user_id"]),
        "name": row["name"],
        "type": row["type"],
        "identifier": row["identifier"],
        "creationDate": iso(row["created_at"]),
        "revisionDate": iso(row["updated_at"]),
        "lastActivityDate": iso(row["refresh_token_issued_at"] or row["updated_at"]),
        "isTrusted": False,
        "encryptedUserKey": None,
        "encryptedPublicKey": None,
        "devicePendingAuthRequest": pending,
        "object": "device",
    }
