"""Accounts: profile, revision date, user key id, password change and session resets."""

from __future__ import annotations

import re

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty, json

from vaultapi import limits, publish
from vaultapi.auth import authorized
from vaultapi.body import Body
from vaultapi.dates import epoch_ms
from vaultapi.errors import ApiError
from vaultapi.models import users
from vaultapi.passwords import hash_password, verify_password

__all__ = ["bp"]

bp = Blueprint("accounts", url_prefix="/api/accounts")

# a key id is 16 bytes as lowercase hex; the SDK rejects a sync carrying anything else
_USER_KEY_ID = re.compile(r"[0-9a-f]{32}")


async def _check_password(request: Request, body: Body) -> None:
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


@bp.get("/profile")
@authorized
async def profile(request: Request) -> HTTPResponse:
    return json(users.profile_json(request.ctx.caller.user))


@bp.route("/profile", methods=["PUT", "POST"])
@authorized
async def update_profile(request: Request) -> HTTPResponse:
    body = Body.of(request)
    caller = request.ctx.caller
    name = body.str("name", max_length=256)
    culture = body.str("culture", max_length=32)
    hint = body.str("masterPasswordHint", max_length=256)
    async with publish.write(request.app.ctx.pool, caller.device_identifier) as conn:
        user = await users.update_profile(conn, caller.user_id, name, hint, culture)
    return json(users.profile_json(user))


@bp.get("/revision-date")
@authorized
async def revision_date(request: Request) -> HTTPResponse:
    return json(epoch_ms(await users.revision_date(request.app.ctx.pool, request.ctx.caller.user_id)))


@bp.post("/key-management/user-key-id")
@authorized
async def set_user_key_id(request: Request) -> HTTPResponse:
    """Clients report the id of their user key once; it is echoed in every sync after that."""
    key_id = Body.of(request).str("userKeyId", required=True, max_length=64)
    if not _USER_KEY_ID.fullmatch(key_id):
        raise ApiError("UserKeyId is not a valid key id.", field="userKeyId")
    caller = request.ctx.caller
    async with publish.write(request.app.ctx.pool, caller.device_identifier) as conn:
        await users.set_user_key_id(conn, caller.user_id, key_id)
    return empty(status=200)


@bp.post("/verify-password")
@authorized
async def verify(request: Request) -> HTTPResponse:
    await _check_password(request, Body.of(request))
    return json({"object": "masterPasswordPolicy"})


@bp.post("/password")
@authorized
async def change_password(request: Request) -> HTTPResponse:
    """New hash and key; every session ends."""
    body = Body.of(request)
    await _check_password(request, body)
    new_hash = body.str("newMasterPasswordHash", max_length=1024)
    key = body.str("key", max_length=10_000)
    if (auth := body.object("authenticationData")) and new_hash is None:
        new_hash = auth.str("masterPasswordAuthenticationHash", max_length=1024)
    if (unlock := body.object("unlockData")) and key is None:
        key = unlock.str("masterKeyWrappedUserKey", max_length=10_000)
    if not new_hash:
        raise ApiError("The NewMasterPasswordHash field is required.", field="newMasterPasswordHash")
    if not key:
        raise ApiError("The Key field is required.", field="key")
    hint = body.str("masterPasswordHint", max_length=256)
    password_hash = await hash_password(new_hash)
    caller = request.ctx.caller
    async with publish.write(request.app.ctx.pool, caller.device_identifier) as conn:
        await users.change_password(conn, caller.user_id, password_hash, key, hint)
    return empty(status=200)


@bp.post("/security-stamp")
@authorized
async def reset_security_stamp(request: Request) -> HTTPResponse:
    """Deauthorize every session, the caller's too."""
    await _check_password(request, Body.of(request))
    caller = request.ctx.caller
    async with publish.write(request.app.ctx.pool, caller.device_identifier) as conn:
        await users.reset_security_stamp(conn, caller.user_id)
    return empty(status=200)
