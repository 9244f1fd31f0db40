"""Who is connecting: the access token of a hub connection, checked before the upgrade.

The token comes as the ``access_token`` query parameter (browsers cannot set headers on a
WebSocket) or an ``Authorization: Bearer`` header (Node, other clients). Its signature, expiry,
not-before and issuer are verified with the public key alone; its security stamp must still be
the user's, so a session deauthorized by a stamp change cannot reconnect with an old token.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from pgwarden.tokens import TokenError, TokenVerifier

__all__ = ["AuthError", "Principal", "authenticate", "bearer_token"]


class AuthError(Exception):
    """Raised when a connection attempt carries no valid token; ``reason`` goes to the log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    device: str | None


def bearer_token(query: dict[str, Any], headers: Any) -> str | None:
    token = query.get("access_token")
    if token:
        return token
    scheme, _, value = (headers.get("authorization") or "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


async def authenticate(token: str | None, verifier: TokenVerifier, pool: asyncpg.Pool) -> Principal:
    if not token:
        raise AuthError("no access token")
    try:
        claims = verifier.verify(token)
    except TokenError as error:
        raise AuthError(f"invalid access token: {error}") from None
    try:
        user_id = str(uuid.UUID(str(claims["sub"])))
    except ValueError:
        raise AuthError("token subject is not a user id") from None
    stamp = await pool.fetchval("SELECT security_stamp::text FROM users WHERE id = $1", uuid.UUID(user_id))
    if stamp is None:
        raise AuthError("no such user")
    if str(claims.get("sstamp")) != stamp:
        raise AuthError("security stamp changed since the token was issued")
    device = claims.get("device")
    return Principal(user_id, device if isinstance(device, str) and device else None)
