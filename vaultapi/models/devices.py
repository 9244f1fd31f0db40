"""The devices table: one row per (user, device identifier), holding its refresh token hash."""

from __future__ import annotations

import uuid

import asyncpg

__all__ = ["is_known", "revoke_refresh_tokens", "sign_in", "take_refresh_token"]


async def sign_in(
    conn: asyncpg.Connection | asyncpg.Pool,
    user_id: uuid.UUID,
    identifier: str,
    device_type: int,
    name: str,
    refresh_token_hash: str,
) -> None:
    """Record a login from this device, replacing any refresh token it held before."""
    await conn.execute(
        """
        INSERT INTO devices (user_id, identifier, type, name, refresh_token_hash)
        VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (user_id, identifier) DO UPDATE
           SET type = EXCLUDED.type, name = EXCLUDED.name,
               refresh_token_hash = EXCLUDED.refresh_token_hash, updated_at = now()
        """,
        user_id, identifier, device_type, name, refresh_token_hash,
    )


async def take_refresh_token(
    conn: asyncpg.Connection | asyncpg.Pool, old_hash: str, new_hash: str
) -> asyncpg.Record | None:
    """Swap a refresh token for a new one, atomically: a token works once. None if unknown."""
    return await conn.fetchrow(
        """
        UPDATE devices SET refresh_token_hash = $2, updated_at = now()
         WHERE refresh_token_hash = $1
        RETURNING user_id, identifier
        """,
        old_hash, new_hash,
    )


async def revoke_refresh_tokens(conn: asyncpg.Connection, user_id: uuid.UUID) -> None:
    await conn.execute("UPDATE devices SET refresh_token_hash = NULL WHERE user_id = $1", user_id)


async def is_known(conn: asyncpg.Connection | asyncpg.Pool, email: str, identifier: str) -> bool:
    return await conn.fetchval(
        """
        SELECT EXISTS (SELECT 1 FROM devices d JOIN users u ON u.id = d.user_id
                        WHERE lower(u.email) = lower($1) AND d.identifier = $2)
        """,
        email.strip(), identifier,
    )
