"""Who is calling: one access-token check for the API and the hub alike.

A token is valid when its signature, issuer and dates check out, its device was not deactivated,
AND its security stamp is still the account's: resetting the stamp (password change, "deauthorize
sessions") makes every older token fail at once, on every replica and every hub, since the stamp
lives in the database; so does deactivating a device for that device's tokens.
The token comes as an ``Authorization: Bearer`` header or, for WebSockets opened by a browser
(which cannot set headers), as the ``access_token`` query parameter.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from core import capabilities
from core.tokens import TokenError, TokenVerifier

__all__ = ["AccessDenied", "Caller", "access_claims", "account_of", "authenticate", "bearer_token", "caller_of",
           "denied_token", "find_stamp"]

#: Reads the account of a token's subject and the token's device (its identifier, or None): the
#: hub the account's id and stamp, the API the whole row; both add ``device_id`` and
#: ``device_active`` (null when the account has no such device).
UserFinder = Callable[[asyncpg.Pool, uuid.UUID, "str | None"], Awaitable[asyncpg.Record | None]]


class AccessDenied(Exception):
    """Raised when a request carries no valid access token; ``reason`` is for the log only."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Caller:
    """The account behind a valid token, and the device the token was issued to."""

    #: What the check's finder read of the account: id and security_stamp at least.
    user: asyncpg.Record
    #: The client's own device identifier: its changes carry it, so it can ignore their echo.
    device_identifier: str | None
    claims: dict[str, Any]

    @property
    def user_id(self) -> uuid.UUID:
        return self.user["id"]

    @property
    def device_id(self) -> uuid.UUID | None:
        """The devices row of the token's device, when the account has one by its identifier."""
        return self.user["device_id"]


def bearer_token(query: Mapping[str, Any], headers: Mapping[str, str], *, allow_query: bool = False) -> str | None:
    """The access_token parameter (where allowed: WebSockets), else the Authorization header."""
    if allow_query and (token := query.get("access_token")):
        return token
    scheme, _, value = (headers.get("authorization") or "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


async def find_stamp(db: asyncpg.Pool, user_id: uuid.UUID, device_identifier: str | None) -> asyncpg.Record | None:
    """What a token check needs of the account and its device, and all the hub's database role
    may read of them (docs/security.md)."""
    return await db.fetchrow(
        """
        SELECT u.id, u.security_stamp, d.id AS device_id, d.active AS device_active
          FROM users u LEFT JOIN devices d ON d.user_id = u.id AND d.identifier = $2
         WHERE u.id = $1
        """,
        user_id, device_identifier)


async def authenticate(
    token: str | None, verifier: TokenVerifier, pool: asyncpg.Pool, *, find_user: UserFinder = find_stamp
) -> Caller:
    """The caller behind a valid token; ``find_user`` reads the account (the API: all of it)."""
    if not token:
        raise AccessDenied("no access token")
    try:
        claims = await verifier.verify(token)
    except TokenError as error:
        raise denied_token(error) from None
    user_id, device = account_of(claims)
    return caller_of(claims, device, await find_user(pool, user_id, device))


def denied_token(error: TokenError) -> AccessDenied:
    """The refusal of a token whose check failed."""
    return AccessDenied(f"invalid access token: {error}")


def account_of(claims: dict[str, Any]) -> tuple[uuid.UUID, str | None]:
    """The account and the device identifier a verified token names, for ``find_user``."""
    try:
        user_id = uuid.UUID(str(claims["sub"]))
    except ValueError:
        raise AccessDenied("token subject is not a user id") from None
    device = claims.get("device")
    return user_id, device if isinstance(device, str) and device else None


def caller_of(claims: dict[str, Any], device: str | None, user: asyncpg.Record | None) -> Caller:
    """The caller, once ``find_user`` read the account of a verified token (None: no such account)."""
    if user is None:
        raise AccessDenied("no such user")
    if str(user["security_stamp"]) != claims.get("sstamp"):
        raise AccessDenied("security stamp changed since the token was issued")
    # a deactivated device's tokens end with it, before they expire (it may log in again)
    if user["device_active"] is False:
        raise AccessDenied("the device was deactivated")
    return Caller(user, device, claims)


def access_claims(user: Mapping[str, Any], device_identifier: str, client_id: str) -> dict[str, Any]:
    """What an access token says about its account and device (the API signs, all verify)."""
    return {
        "sub": str(user["id"]),
        "email": user["email"],
        "email_verified": user["email_verified"],
        "name": user["name"] or "",
        "premium": capabilities.PREMIUM,
        "device": device_identifier,
        "sstamp": str(user["security_stamp"]),
        "client_id": client_id,
        "scope": ["api", "offline_access"],
        "amr": ["Application"],
    }
