"""The users table: account finders and the JSON shapes that describe an account."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from core import capabilities
from vaultapi.dates import iso

__all__ = [
    "account_keys_json",
    "domains_json",
    "find_by_email",
    "find_by_id",
    "kdf_json",
    "master_password_unlock_json",
    "profile_json",
    "touch",
]


async def find_by_id(conn: asyncpg.Connection | asyncpg.Pool, user_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM users WHERE id = $1", user_id)


async def find_by_email(conn: asyncpg.Connection | asyncpg.Pool, email: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM users WHERE lower(email) = lower($1)", email.strip())


async def touch(conn: asyncpg.Connection, user_id: uuid.UUID) -> None:
    """Move the account revision date forward, so clients re-sync on their next check."""
    await conn.execute("SELECT pgwarden_touch_users(ARRAY[$1::uuid])", user_id)


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


def profile_json(user: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(user["id"]),
        "name": user["name"],
        "email": user["email"],
        "emailVerified": user["email_verified"],
        "premium": capabilities.PREMIUM,
        "premiumFromOrganization": False,
        "masterPasswordHint": user["password_hint"],
        "culture": user["culture"],
        "twoFactorEnabled": False,
        "key": user["key"],
        "privateKey": user["private_key"],
        "accountKeys": account_keys_json(user),
        "securityStamp": str(user["security_stamp"]),
        "forcePasswordReset": False,
        "usesKeyConnector": False,
        "avatarColor": user["avatar_color"],
        "creationDate": iso(user["created_at"]),
        "verifyDevices": False,
        "organizations": [],
        "providers": [],
        "providerOrganizations": [],
        "object": "profile",
    }


def domains_json(user: asyncpg.Record) -> dict[str, Any]:
    # no built-in list of global equivalent domains: only the user's own groups
    return {"equivalentDomains": user["equivalent_domains"], "globalEquivalentDomains": [], "object": "domains"}
