"""A user's two-step providers (users.two_factor_providers), recovery code, and the codes that
work once (one_time_codes, used_totp_codes).

Providers are keyed by the Bitwarden provider type, as text: {"0": {"enabled": true, "key": ...}}.
Every write here is one statement, so two replicas changing the same account never lose each
other's change.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import string
import uuid
from typing import Any

import asyncpg

__all__ = [
    "AUTHENTICATOR",
    "EMAIL",
    "RECOVERY_CODE",
    "REMEMBER",
    "WEBAUTHN",
    "consume_code",
    "consume_state",
    "disable",
    "enable",
    "enabled_providers",
    "issue_code",
    "new_numeric_code",
    "recover",
    "save_state",
    "set_key_counter",
    "totp_code_unused",
]

# Bitwarden's TwoFactorProviderType
AUTHENTICATOR = 0
EMAIL = 1
REMEMBER = 5
WEBAUTHN = 7
RECOVERY_CODE = 8

#: seconds an accepted authenticator code stays refused (the Bitwarden server's replay window)
TOTP_REPLAY_WINDOW = 120

_DB = asyncpg.Connection | asyncpg.Pool


def enabled_providers(user: asyncpg.Record) -> dict[int, dict[str, Any]]:
    """The user's enabled providers: type to its data."""
    return {int(kind): data for kind, data in (user["two_factor_providers"] or {}).items() if data.get("enabled")}


def _new_recovery_code() -> str:
    # 32 lowercase letters and digits, as the Bitwarden server makes them
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(32))


async def enable(db: _DB, user_id: uuid.UUID, kind: int, data: dict[str, Any]) -> asyncpg.Record:
    """Turn a provider on (replacing its data); the first one also makes a recovery code."""
    return await db.fetchrow(
        """
        UPDATE users SET two_factor_providers = two_factor_providers || jsonb_build_object($2::text, $3::jsonb),
                         two_factor_recovery_code = COALESCE(two_factor_recovery_code, $4),
                         updated_at = now()
         WHERE id = $1 RETURNING *
        """,
        user_id, str(kind), {**data, "enabled": True}, _new_recovery_code())


async def disable(db: _DB, user_id: uuid.UUID, kind: int) -> asyncpg.Record:
    return await db.fetchrow(
        "UPDATE users SET two_factor_providers = two_factor_providers - $2::text, updated_at = now()"
        " WHERE id = $1 RETURNING *",
        user_id, str(kind))


async def recover(db: _DB, user_id: uuid.UUID, code: str) -> bool:
    """The recovery code turns every provider off and is replaced by a new one; whether it was
    right. One statement: two replicas cannot both use the same code."""
    given = code.replace(" ", "").strip().lower()
    return await db.fetchval(
        """
        UPDATE users SET two_factor_providers = '{}', two_factor_recovery_code = $3, updated_at = now()
         WHERE id = $1 AND two_factor_recovery_code = $2 RETURNING true
        """,
        user_id, given, _new_recovery_code()) is not None


async def totp_code_unused(db: _DB, user_id: uuid.UUID, code: str) -> bool:
    """Record an accepted authenticator code; False when it was accepted already within the window."""
    await db.execute("DELETE FROM used_totp_codes WHERE user_id = $1 AND expires_at <= now()", user_id)
    return await db.fetchval(
        """
        INSERT INTO used_totp_codes AS used (user_id, code, expires_at)
        VALUES ($1, $2, now() + $3::integer * interval '1 second')
        ON CONFLICT (user_id, code) DO UPDATE SET expires_at = EXCLUDED.expires_at WHERE used.expires_at <= now()
        RETURNING true
        """,
        user_id, code, TOTP_REPLAY_WINDOW) is not None


# ---- codes and challenges that work once ---------------------------------------------------

def new_numeric_code(digits: int = 6) -> str:
    return "".join(secrets.choice(string.digits) for _ in range(digits))


def _digest(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


async def issue_code(db: _DB, user_id: uuid.UUID, purpose: str, code: str, lifetime: int) -> None:
    """Store a code for the purpose, replacing an earlier one; only its hash is kept."""
    await save_state(db, user_id, purpose, _digest(code), lifetime)


async def consume_code(db: _DB, user_id: uuid.UUID, purpose: str, code: str) -> bool:
    """Whether the code is the purpose's current one and unexpired; a right code is used up."""
    return await db.fetchval(
        "DELETE FROM one_time_codes WHERE user_id = $1 AND purpose = $2 AND secret = $3 AND expires_at > now()"
        " RETURNING true",
        user_id, purpose, _digest(code.strip())) is not None


async def save_state(db: _DB, user_id: uuid.UUID, purpose: str, secret: str, lifetime: int) -> None:
    await db.execute(
        """
        INSERT INTO one_time_codes (user_id, purpose, secret, expires_at)
        VALUES ($1, $2, $3, now() + $4::integer * interval '1 second')
        ON CONFLICT (user_id, purpose) DO UPDATE SET secret = EXCLUDED.secret, expires_at = EXCLUDED.expires_at
        """,
        user_id, purpose, secret, lifetime)


async def consume_state(db: _DB, user_id: uuid.UUID, purpose: str) -> dict[str, Any] | None:
    """The purpose's stored state (a JSON challenge), used up; None when there is none or it expired."""
    secret = await db.fetchval(
        "DELETE FROM one_time_codes WHERE user_id = $1 AND purpose = $2 RETURNING CASE WHEN expires_at > now()"
        " THEN secret END",
        user_id, purpose)
    return json.loads(secret) if secret else None


async def set_key_counter(db: _DB, user_id: uuid.UUID, key_id: int, counter: int) -> None:
    """Move a WebAuthn key's signature counter forward (never back: a concurrent login may have
    moved it further)."""
    await db.execute(
        """
        UPDATE users SET two_factor_providers = jsonb_set(two_factor_providers, '{7,keys}', (
            SELECT jsonb_agg(CASE WHEN (k ->> 'id')::int = $2
                                  THEN jsonb_set(k, '{counter}', to_jsonb(greatest((k ->> 'counter')::bigint, $3)))
                                  ELSE k END ORDER BY ordinality)
              FROM jsonb_array_elements(two_factor_providers -> '7' -> 'keys') WITH ORDINALITY AS e(k, ordinality)))
         WHERE id = $1 AND two_factor_providers ? '7'
        """,
        user_id, key_id, counter)
