"""What a refused request must leave behind: an error the client can show, and no change at all.

`vault_bytes` is a user's vault as their client sees it; `user_rows` is everything the database
holds for the user, so a comparison before and after catches a write no reply would reveal.
"""

from __future__ import annotations

import uuid

import asyncpg
import httpx

from tests.support.bwclient import BitwardenClient

__all__ = ["TOKEN_PATH", "assert_error_shape", "user_rows", "vault_bytes"]

TOKEN_PATH = "/identity/connect/token"


def assert_error_shape(reply: httpx.Response) -> None:
    """A 4xx whose body the clients can show: OAuth-style on the token endpoint, else Bitwarden's."""
    assert 400 <= reply.status_code < 500, (reply.request.method, reply.request.url, reply.status_code, reply.text)
    body = reply.json()
    if reply.request.url.path == TOKEN_PATH:
        assert isinstance(body["error"], str) and body["error"], body
        assert isinstance(body["error_description"], str) and body["error_description"], body
        return
    assert set(body) == {"message", "validationErrors", "object"}, body
    assert body["object"] == "error" and isinstance(body["message"], str) and body["message"], body
    errors = body["validationErrors"]
    assert errors is None or all(
        isinstance(field, str) and isinstance(messages, list) and all(isinstance(m, str) for m in messages)
        for field, messages in errors.items()), body


async def vault_bytes(client: BitwardenClient) -> tuple[bytes, bytes]:
    """The vault as the client sees it: the sync reply and the revision date, byte for byte."""
    sync = await client.get("/api/sync")
    revision = await client.get("/api/accounts/revision-date")
    assert sync.status_code == revision.status_code == 200
    return sync.content, revision.content


async def user_rows(db: asyncpg.Connection, user_id: str) -> tuple[str | None, ...]:
    """The user's account, folders, items and devices as the database holds them."""
    row = await db.fetchrow(
        """
        SELECT (SELECT to_jsonb(u) FROM users u WHERE id = $1)::text,
               (SELECT jsonb_agg(f ORDER BY f.id) FROM folders f WHERE user_id = $1)::text,
               (SELECT jsonb_agg(c ORDER BY c.id) FROM ciphers c WHERE user_id = $1)::text,
               (SELECT jsonb_agg(d ORDER BY d.id) FROM devices d WHERE user_id = $1)::text
        """, uuid.UUID(user_id))
    return tuple(row)
