"""The auth_requests table: login with device.

A device that is not signed in (the waiting device) asks for the user key: it sends its one-off
public key and an access code, and waits on the anonymous hub. A signed-in device of the account
approves (sending the user key encrypted to that public key) or denies, once. The waiting device
then reads the answer with its access code and logs in with it (the password grant, the access
code as the password). Each step is refused once the request is 15 minutes old, as the clients
assume; the login also once it was used, or denied.

The access code is kept as a hash: it is a password, for one login.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from typing import Any

import asyncpg

from vaultapi import publish
from vaultapi.dates import iso
from vaultapi.errors import ApiError, NotFound

__all__ = [
    "AUTHENTICATE_AND_UNLOCK",
    "LIFETIME_MINUTES",
    "UNLOCK",
    "answer",
    "create",
    "find_answer",
    "find_for_user",
    "hash_access_code",
    "list_for_user",
    "pending_for_user",
    "request_json",
    "usable_for_login",
    "use_for_login",
]

AUTHENTICATE_AND_UNLOCK = 0
UNLOCK = 1
#: how long a request may be answered, read and used: Bitwarden's (the clients count on it)
LIFETIME_MINUTES = 15
#: kept for a day, for the account's list, then deleted with the next request made
_KEPT = "1 day"

# src/Core/Enums/DeviceType.cs, the display names Bitwarden's answer gives
_DEVICE_TYPE_NAMES = {
    0: "Android", 1: "iOS", 2: "Chrome Extension", 3: "Firefox Extension", 4: "Opera Extension",
    5: "Edge Extension", 6: "Windows", 7: "macOS", 8: "Linux", 9: "Chrome", 10: "Firefox", 11: "Opera",
    12: "Edge", 13: "Internet Explorer", 14: "Unknown Browser", 15: "Android", 16: "UWP", 17: "Safari",
    18: "Vivaldi", 19: "Vivaldi Extension", 20: "Safari Extension", 21: "SDK", 22: "Server", 23: "Windows CLI",
    24: "macOS CLI", 25: "Linux CLI", 26: "DuckDuckGo",
}

_FRESH = f"created_at > now() - interval '{LIFETIME_MINUTES} minutes'"


def hash_access_code(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


async def create(
    conn: asyncpg.Connection, user_id: uuid.UUID, request_type: int, device_identifier: str, device_type: int,
    address: str, public_key: str, access_code: str,
) -> asyncpg.Record:
    """A new request; every signed-in device of the user hears of it (AuthRequest)."""
    await conn.execute(f"DELETE FROM auth_requests WHERE created_at < now() - interval '{_KEPT}'")
    row = await conn.fetchrow(
        """
        INSERT INTO auth_requests (user_id, type, request_device_identifier, request_device_type, request_ip,
                                   public_key, access_code_hash)
        VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *
        """,
        user_id, request_type, device_identifier, device_type, address[:64], public_key,
        hash_access_code(access_code))
    await publish.auth_request(conn, user_id, row["id"])
    return row


async def find_for_user(conn: asyncpg.Connection | asyncpg.Pool, request_id: uuid.UUID,
                        user_id: uuid.UUID) -> asyncpg.Record:
    """The user's request; another user's or an unknown one is a 404 alike."""
    row = await conn.fetchrow("SELECT * FROM auth_requests WHERE id = $1 AND user_id = $2", request_id, user_id)
    if row is None:
        raise NotFound("Auth request")
    return row


async def list_for_user(conn: asyncpg.Connection | asyncpg.Pool, user_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM auth_requests WHERE user_id = $1 ORDER BY created_at", user_id)


async def pending_for_user(conn: asyncpg.Connection | asyncpg.Pool, user_id: uuid.UUID) -> list[asyncpg.Record]:
    """Unanswered and fresh: the newest of each requesting device (only that one may be
    approved), with the requesting device's row when the account knows it."""
    return await conn.fetch(
        f"""
        SELECT DISTINCT ON (r.request_device_identifier) r.*, d.id AS request_device_id
          FROM auth_requests r
          LEFT JOIN devices d ON d.user_id = r.user_id AND d.identifier = r.request_device_identifier
         WHERE r.user_id = $1 AND r.approved IS NULL AND r.{_FRESH}
         ORDER BY r.request_device_identifier, r.created_at DESC
        """,
        user_id)


async def answer(
    conn: asyncpg.Connection, request_id: uuid.UUID, user_id: uuid.UUID, response_device_identifier: str,
    approved: bool, key: str | None, master_password_hash: str | None,
) -> asyncpg.Record:
    """Approve or deny, once. An approval must answer the newest request of its device (an older
    one could be an attacker's, made to look like it); only an approval is announced (a denial
    tells a stranger's device nothing)."""
    row = await conn.fetchrow(
        f"SELECT *, {_FRESH} AS fresh FROM auth_requests WHERE id = $1 AND user_id = $2 FOR UPDATE",
        request_id, user_id)
    if row is None or not row["fresh"]:
        raise NotFound("Auth request")
    if row["approved"] is not None:
        raise ApiError("This request was already answered.")
    if approved:
        if not key:
            raise ApiError("The Key field is required to approve a request.", field="key")
        newer = await conn.fetchval(
            """
            SELECT EXISTS (SELECT 1 FROM auth_requests
                            WHERE user_id = $1 AND request_device_identifier = $2 AND created_at > $3)
            """,
            user_id, row["request_device_identifier"], row["created_at"])
        if newer:
            raise ApiError("This request is no longer valid. Make sure to approve the most recent request.")
    device_id = await conn.fetchval(
        "SELECT id FROM devices WHERE user_id = $1 AND identifier = $2 AND active", user_id,
        response_device_identifier)
    if device_id is None:
        raise ApiError("Invalid device.", field="deviceIdentifier")
    answered = await conn.fetchrow(
        """
        UPDATE auth_requests SET approved = $2, response_date = now(), response_device_id = $3,
                                 key = $4, master_password_hash = $5
         WHERE id = $1 RETURNING *
        """,
        request_id, approved, device_id, key if approved else None, master_password_hash if approved else None)
    if approved:
        await publish.auth_request_answered(conn, user_id, request_id)
    return answered


async def find_answer(conn: asyncpg.Connection | asyncpg.Pool, request_id: uuid.UUID, code: str) -> asyncpg.Record:
    """The request as its waiting device reads it, with its access code; 404 when the code is
    wrong or the request too old."""
    row = await conn.fetchrow(f"SELECT *, {_FRESH} AS fresh FROM auth_requests WHERE id = $1", request_id)
    if row is None or not hmac.compare_digest(row["access_code_hash"], hash_access_code(code)) or not row["fresh"]:
        raise NotFound("Auth request")
    return row


#: an approved request its waiting device may log in with: once, fresh, from the device that
#: asked, with its code
_USABLE = f"""id = $1 AND user_id = $2 AND request_device_identifier = $3 AND access_code_hash = $4
              AND approved AND type = $5 AND authentication_date IS NULL AND {_FRESH}"""


async def usable_for_login(conn: asyncpg.Connection | asyncpg.Pool, request_id: uuid.UUID, user_id: uuid.UUID,
                           device_identifier: str, code: str) -> bool:
    """Whether the login may go on (to a second factor, say) with this request; nothing is spent."""
    return await conn.fetchval(
        f"SELECT EXISTS (SELECT 1 FROM auth_requests WHERE {_USABLE})",
        request_id, user_id, device_identifier, hash_access_code(code), AUTHENTICATE_AND_UNLOCK)


async def use_for_login(conn: asyncpg.Connection | asyncpg.Pool, request_id: uuid.UUID, user_id: uuid.UUID,
                        device_identifier: str, code: str) -> bool:
    """Spend the request on the login, once: of two logins at the same moment, one gets it."""
    used = await conn.fetchval(
        f"UPDATE auth_requests SET authentication_date = now() WHERE {_USABLE} RETURNING id",
        request_id, user_id, device_identifier, hash_access_code(code), AUTHENTICATE_AND_UNLOCK)
    return used is not None


def request_json(row: asyncpg.Record, origin: str) -> dict[str, Any]:
    """An auth request as the clients read it (AuthRequestResponseModel)."""
    reply = {
        "id": str(row["id"]),
        "publicKey": row["public_key"],
        "requestDeviceType": _DEVICE_TYPE_NAMES.get(row["request_device_type"], "Unknown Browser"),
        "requestDeviceTypeValue": row["request_device_type"],
        "requestDeviceIdentifier": row["request_device_identifier"],
        "requestIpAddress": row["request_ip"],
        "requestCountryName": None,
        "key": row["key"],
        "masterPasswordHash": row["master_password_hash"],
        "creationDate": iso(row["created_at"]),
        "responseDate": iso(row["response_date"]),
        "requestApproved": bool(row["approved"]),
        "origin": origin,
        "object": "auth-request",
    }
    if "request_device_id" in row.keys():
        reply["requestDeviceId"] = str(row["request_device_id"]) if row["request_device_id"] else None
    return reply
