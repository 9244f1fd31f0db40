"""Routes that need a signed-in caller, and the refresh tokens the API hands out.

The token check itself is core.access, shared with the hub; here a refused token becomes the
API's 401.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from sanic import Request
from sanic.response import HTTPResponse

from core.access import AccessDenied, Caller, authenticate, bearer_token
from vaultapi import limits
from vaultapi.body import Body
from vaultapi.errors import ApiError, Unauthorized
from vaultapi.models import users
from vaultapi.passwords import verify_password

__all__ = ["Caller", "authorized", "caller_of", "check_master_password", "hash_refresh_token", "needs_caller",
           "new_refresh_token"]

Handler = Callable[..., Awaitable[HTTPResponse]]


async def caller_of(request: Request) -> Caller:
    """The caller behind the request's bearer token; 401 when there is none or it is no longer valid."""
    token = bearer_token(request.args, request.headers)
    if token is None:
        raise Unauthorized("Missing or malformed access token.")
    try:
        return await authenticate(token, request.app.ctx.verifier, request.app.ctx.pool,
                                  find_user=users.find_caller)
    except AccessDenied:
        raise Unauthorized("Invalid access token or ended session; log in again.") from None


def authorized(handler: Handler) -> Handler:
    """Run the handler only for a valid access token; the caller is request.ctx.caller."""

    @functools.wraps(handler)
    async def checked(request: Request, *args: Any, **kwargs: Any) -> HTTPResponse:
        # checked already when the request has a body: before it was read (vaultapi.app)
        if getattr(request.ctx, "caller", None) is None:
            request.ctx.caller = await caller_of(request)
        return await handler(request, *args, **kwargs)

    checked.needs_caller = True  # type: ignore[attr-defined]
    return checked


async def check_master_password(request: Request, body: Body) -> None:
    """The caller proves the master password again (masterPasswordHash, or the nested form of
    newer clients) before a sensitive change; attempts count against the login limits."""
    given = body.str("masterPasswordHash", max_length=1024)
    if given is None and (auth := body.object("authenticationData")):
        given = auth.str("masterPasswordAuthenticationHash", max_length=1024)
    if not given:
        raise ApiError("Invalid password.", field="masterPasswordHash")
    user = request.ctx.caller.user
    await limits.password_attempt(request, user["email"])
    if not await verify_password(user["password_hash"], given):
        raise ApiError("Invalid password.", field="masterPasswordHash")
    await limits.password_verified(request, user["email"])


def needs_caller(handler: Any) -> bool:
    """Whether a route's handler is wrapped by :func:`authorized`."""
    return getattr(handler, "needs_caller", False)


def new_refresh_token() -> str:
    return secrets.token_urlsafe(48)


def hash_refresh_token(token: str) -> str:
    # a 384-bit random token needs no slow hash: sha256 keeps a leaked table useless
    return hashlib.sha256(token.encode()).hexdigest()
