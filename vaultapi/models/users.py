"""The users table: account finders, writes, and the JSON shapes that describe an account.

The users table has no trigger: a write here that other devices must hear of publishes its
event itself, through vaultapi.publish.
"""

from __future__ import annotations

import secrets
import string
import uuid
from datetime import datetime
from typing import Any

import asyncpg

from core import capabilities
from db.events import PushType
from vaultapi import publish
from vaultapi.dates import iso
from vaultapi.errors import ApiError
from vaultapi.models import devices, two_factor

__all__ = [
    "account_keys_json",
    "api_key",
    "change_kdf",
    "change_email",
    "change_password",
    "delete_account",
    "domains_json",
    "find_by_email",
    "find_by_id",
    "find_caller",
    "kdf_json",
    "master_password_unlock_json",
    "profile_json",
    "reset_security_stamp",
    "revision_date",
    "purge_vault",
    "rotate_api_key",
    "save_domains",
    "set_avatar_color",
    "set_user_key_id",
    "touch",
    "update_profile",
]


async def find_by_id(conn: asyncpg.Connection | asyncpg.Pool, user_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM users WHERE id = $1", user_id)


async def find_caller(
    conn: asyncpg.Connection | asyncpg.Pool, user_id: uuid.UUID, device_identifier: str | None
) -> asyncpg.Record | None:
    """The account behind an access token, with its device (core.access.UserFinder)."""
    return await conn.fetchrow(
        """
        SELECT u.*, d.id AS device_id, d.active AS device_active
          FROM users u LEFT JOIN devices d ON d.user_id = u.id AND d.identifier = $2
         WHERE u.id = $1
        """,
        user_id, device_identifier)


async def find_by_email(conn: asyncpg.Connection | asyncpg.Pool, email: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM users WHERE lower(email) = lower($1)", email.strip())


async def revision_date(conn: asyncpg.Connection | asyncpg.Pool, user_id: uuid.UUID) -> datetime:
    return await conn.fetchval("SELECT revision_date FROM pgwarden_user_revisions(ARRAY[$1::uuid])", user_id)


async def touch(conn: asyncpg.Connection, user_id: uuid.UUID) -> None:
    """Move the account revision date forward, so clients re-sync on their next check."""
    await conn.execute("SELECT pgwarden_touch_users(ARRAY[$1::uuid])", user_id)


# ---- writes: call them inside publish.write -------------------------------------------------

async def update_profile(
    conn: asyncpg.Connection, user_id: uuid.UUID, name: str | None, hint: str | None, culture: str | None
) -> asyncpg.Record:
    """Publishes nothing: the other devices read the profile on their next sync."""
    return await conn.fetchrow(
        """
        UPDATE users SET name = $2, password_hint = $3, culture = COALESCE($4, culture), updated_at = now()
         WHERE id = $1 RETURNING *
        """,
        user_id, name, hint, culture)


async def set_user_key_id(conn: asyncpg.Connection, user_id: uuid.UUID, key_id: str) -> None:
    """Stored once; the same id again is fine, another one is refused."""
    current = await conn.fetchval("SELECT user_key_id FROM users WHERE id = $1 FOR UPDATE", user_id)
    if current == key_id:
        return
    if current is not None:
        raise ApiError("User key id is already set.", field="userKeyId")
    await conn.execute("UPDATE users SET user_key_id = $2 WHERE id = $1", user_id, key_id)
    # a newer revision date makes clients drop the sync they cached without the id
    await touch(conn, user_id)


async def save_domains(
    conn: asyncpg.Connection, user_id: uuid.UUID, groups: list[list[str]], excluded: list[int]
) -> asyncpg.Record:
    """The equivalent domains; the other devices are told to sync their settings."""
    user = await conn.fetchrow(
        """
        UPDATE users SET equivalent_domains = $2, excluded_global_equivalent_domains = $3, updated_at = now()
         WHERE id = $1 RETURNING *
        """,
        user_id, groups, excluded)
    await publish.user_event(conn, user_id, PushType.SYNC_SETTINGS)
    return user


async def change_password(
    conn: asyncpg.Connection, user_id: uuid.UUID, password_hash: str, key: str, hint: str | None
) -> None:
    """New hash and key: every session ends. The LogOut names the acting device, whose client
    signs itself out."""
    await conn.execute(
        """
        UPDATE users SET password_hash = $2, key = $3, password_hint = $4,
                         security_stamp = gen_random_uuid(), updated_at = now()
         WHERE id = $1
        """,
        user_id, password_hash, key, hint)
    await devices.revoke_refresh_tokens(conn, user_id)
    await publish.log_out_other_devices(conn, user_id)


async def change_email(
    conn: asyncpg.Connection, user_id: uuid.UUID, email: str, password_hash: str, key: str
) -> None:
    """The new address, and the password re-derived with it as the salt: every session ends, the
    acting device signs itself out on the LogOut that names it."""
    try:
        await conn.execute(
            """
            UPDATE users SET email = $2, email_verified = true, password_hash = $3, key = $4,
                             security_stamp = gen_random_uuid(), updated_at = now()
             WHERE id = $1
            """,
            user_id, email, password_hash, key)
    except asyncpg.UniqueViolationError:
        raise ApiError("That email is already taken.", field="newEmail") from None
    await devices.revoke_refresh_tokens(conn, user_id)
    await publish.log_out_other_devices(conn, user_id)


async def reset_security_stamp(conn: asyncpg.Connection, user_id: uuid.UUID) -> None:
    """Deauthorize every session, the acting one's too."""
    await conn.execute("UPDATE users SET security_stamp = gen_random_uuid(), updated_at = now() WHERE id = $1", user_id)
    await devices.revoke_refresh_tokens(conn, user_id)
    await publish.log_out_all_devices(conn, user_id)


async def change_kdf(
    conn: asyncpg.Connection, user_id: uuid.UUID, password_hash: str, key: str, kdf: dict[str, int | None]
) -> None:
    """New KDF settings, with the hash and key they make: every session ends, as after a password
    change (the other devices could no longer unlock)."""
    await conn.execute(
        """
        UPDATE users SET password_hash = $2, key = $3, kdf_type = $4, kdf_iterations = $5, kdf_memory = $6,
                         kdf_parallelism = $7, security_stamp = gen_random_uuid(), updated_at = now()
         WHERE id = $1
        """,
        user_id, password_hash, key, kdf["kdf_type"], kdf["kdf_iterations"], kdf["kdf_memory"],
        kdf["kdf_parallelism"])
    await devices.revoke_refresh_tokens(conn, user_id)
    await publish.log_out_other_devices(conn, user_id)


async def set_avatar_color(conn: asyncpg.Connection, user_id: uuid.UUID, color: str | None) -> asyncpg.Record:
    """The other devices are told to sync their settings, as Bitwarden tells them."""
    user = await conn.fetchrow("UPDATE users SET avatar_color = $2, updated_at = now() WHERE id = $1 RETURNING *",
                               user_id, color)
    await publish.user_event(conn, user_id, PushType.SYNC_SETTINGS)
    return user


async def purge_vault(conn: asyncpg.Connection, user_id: uuid.UUID) -> None:
    """Every personal item and folder, for good; one SyncVault (the folders' bulk event and this
    one are the same payload, which NOTIFY sends once; deleting the items adds a SyncCiphers)."""
    await publish.mark_bulk_change(conn)
    await conn.execute("DELETE FROM ciphers WHERE user_id = $1", user_id)
    await conn.execute("DELETE FROM folders WHERE user_id = $1", user_id)
    await publish.user_event(conn, user_id, PushType.SYNC_VAULT)


async def delete_account(conn: asyncpg.Connection, user_id: uuid.UUID) -> None:
    """The account and all it holds. Refused while it is the only confirmed owner of an
    organization with other members' data at stake (as Bitwarden). Every session ends: the LogOut
    leaves at commit, after the row it names is gone."""
    sole = await conn.fetchval(
        """
        SELECT EXISTS (SELECT 1 FROM memberships m
                        WHERE m.user_id = $1 AND m.type = 0 AND m.status = 2
                          AND NOT EXISTS (SELECT 1 FROM memberships o
                                           WHERE o.organization_id = m.organization_id AND o.id <> m.id
                                             AND o.type = 0 AND o.status = 2))
        """,
        user_id)
    if sole:
        raise ApiError("Cannot delete this user because it is the sole owner of at least one organization. "
                       "Please delete these organizations or upgrade another user.")
    await publish.log_out_all_devices(conn, user_id)
    await conn.execute("DELETE FROM users WHERE id = $1", user_id)


#: Bitwarden's API keys: 30 letters and digits
_API_KEY_ALPHABET = string.ascii_letters + string.digits


def _new_api_key() -> str:
    return "".join(secrets.choice(_API_KEY_ALPHABET) for _ in range(30))


async def api_key(conn: asyncpg.Connection, user_id: uuid.UUID) -> asyncpg.Record:
    """The account's API key, made on first request. The key and the users row."""
    return await conn.fetchrow(
        "UPDATE users SET api_key = COALESCE(api_key, $2) WHERE id = $1 RETURNING *", user_id, _new_api_key())


async def rotate_api_key(conn: asyncpg.Connection, user_id: uuid.UUID) -> asyncpg.Record:
    """A new API key; the old one stops working at once (sessions it opened run to their end)."""
    return await conn.fetchrow(
        "UPDATE users SET api_key = $2, updated_at = now() WHERE id = $1 RETURNING *", user_id, _new_api_key())


# ---- wire shapes ---------------------------------------------------------------------------

def kdf_json(user: asyncpg.Record) -> dict[str, Any]:
    return {
        "kdfType": user["kdf_type"],
        "iterations": user["kdf_iterations"],
        "memory": user["kdf_memory"],
        "parallelism": user["kdf_parallelism"],
    }


def master_password_unlock_json(user: asyncpg.Record) -> dict[str, Any]:
    return {
        "kdf": kdf_json(user),
        "masterKeyEncryptedUserKey": user["key"],
        "masterKeyWrappedUserKey": user["key"],
        "salt": user["email"].lower(),
    }


def account_keys_json(user: asyncpg.Record) -> dict[str, Any] | None:
    if not user["private_key"] or not user["public_key"]:
        return None
    return {
        "publicKeyEncryptionKeyPair": {
            "wrappedPrivateKey": user["private_key"],
            "publicKey": user["public_key"],
            "object": "publicKeyEncryptionKeyPair",
        },
        "object": "privateKeys",
    }


def profile_json(user: asyncpg.Record, organizations: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The account as the clients read it; organizations: its confirmed memberships
    (organizations.profile_json)."""
    return {
        "id": str(user["id"]),
        "name": user["name"],
        "email": user["email"],
        "emailVerified": user["email_verified"],
        "premium": capabilities.PREMIUM,
        "premiumFromOrganization": False,
        "masterPasswordHint": user["password_hint"],
        "culture": user["culture"],
        "twoFactorEnabled": bool(two_factor.enabled_providers(user)),
        "key": user["key"],
        "privateKey": user["private_key"],
        "accountKeys": account_keys_json(user),
        "securityStamp": str(user["security_stamp"]),
        "forcePasswordReset": False,
        "usesKeyConnector": False,
        "avatarColor": user["avatar_color"],
        "creationDate": iso(user["created_at"]),
        "verifyDevices": False,
        "organizations": organizations or [],
        "providers": [],
        "providerOrganizations": [],
        "object": "profile",
    }


def domains_json(user: asyncpg.Record) -> dict[str, Any]:
    # no built-in list of global equivalent domains: only the user's own groups
    return {"equivalentDomains": user["equivalent_domains"], "globalEquivalentDomains": [], "object": "domains"}
