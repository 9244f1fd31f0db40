"""Who is calling: access tokens in, the caller's account and device out.

An access token is valid when its signature, issuer and dates check out AND its security stamp
is still the account's: resetting the stamp (password change, "deauthorize sessions") makes
every older token fail at once, on every replica, since the stamp lives in the database.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
from sanic import Request
from sanic.response import HTTPResponse

from pgwarden.tokens import TokenError
from vaultapi.errors import Unauthorized
from vaultapi.models import users

__all__ = [
    "Caller",
    "access_claims",
    "authenticate",
    "authorized",
    "hash_refresh_token",
    "new_refresh_token",
]

Handler = Callable[..., Awaitable[HTTPResponse]]


@dataclass(frozen=True)
class Caller:
    user: asyncpg.Record
    device: str  # the client's device identifier, the ContextId of its changes
    claims: dict[str, Any]

    @property
    def user_id(self) -> uuid.UUID:
        return self.user["id"]


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Missing or malformed access token.")
    return token.strip()


async def authenticate(request: Request) -> Caller:
    try:
        claims = request.app.ctx.verifier.verify(_bearer(request))
        user_id = uuid.UUID(str(claims["sub"]))
    except (TokenError, ValueError):
        raise Unauthorized("Invalid access token.") from None
    user = await users.find_by_id(request.app.ctx.pool, user_id)
    if user is None or str(user["security_stamp"]) != claims.get("sstamp"):
        raise Unauthorized("The session has ended; log in again.")
    return Caller(user=user, device=str(claims.get("device") or ""), claims=claims)


def authorized(handler: Handler) -> Handler:
    """Run the handler only for a valid access token; the caller is request.ctx.caller."""

    @functools.wraps(handler)
    async def checked(request: Request, *args: Any, **kwargs: Any) -> HTTPResponse:
        request.ctx.caller = await authenticate(request)
        return await handler(request, *args, **kwargs)

    return checked


def access_claims(user: asyncpg.Record, device_identifier: str, client_id: str) -> dict[str, Any]:
    return {
        "sub": str(user["id"]),
        "email": user["email"],
        "email_verified": user["email_verified"],
        "name": user["name"] or "",
        "premium": True,
        "device": device_identifier,
        "sstamp": str(user["security_stamp"]),
        "client_id": client_id,
        "scope": ["api", "offline_access"],
        "amr": ["Application"],
    }


def new_refresh_token() -> str:
    return secrets.token_urlsafe(48)


def hash_refresh_token(token: str) -> str:
    # a 384-bit random token needs no slow hash: sha256 keeps a leaked table useless
    return hashlib.sha256(token.encode()).hexdigest()
