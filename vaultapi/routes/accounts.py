"""Accounts: profile, revision date, user key id, password and KDF changes, session resets, the
personal API key, avatar color, and deleting the account."""

from __future__ import annotations

import re
from typing import Any

import asyncpg
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty, json

from vaultapi import publish
from vaultapi.auth import authorized, check_master_password
from vaultapi.body import Body
from vaultapi.dates import epoch_ms, iso
from vaultapi.errors import ApiError
from vaultapi.models import memberships, organizations, users
from vaultapi.passwords import hash_password
from vaultapi.registration import KDF_ARGON2ID, Registration

__all__ = ["bp"]

bp = Blueprint("accounts", url_prefix="/api/accounts")

# a key id is 16 bytes as lowercase hex; the SDK rejects a sync carrying anything else
_USER_KEY_ID = re.compile(r"[0-9a-f]{32}")
# src/Api/Auth/Models/Request/Accounts/UpdateAvatarRequestModel.cs: StringLength(7), a #rrggbb color
_AVATAR_COLOR = re.compile(r"#[0-9a-fA-F]{6}")


async def _profile_json(request: Request, user: asyncpg.Record) -> dict[str, Any]:
    member_rows = await memberships.profile_rows(request.app.ctx.pool, user["id"])
    return users.profile_json(user, [organizations.profile_json(row) for row in member_rows])


@bp.get("/profile")
@authorized
async def profile(request: Request) -> HTTPResponse:
    return json(await _profile_json(request, request.ctx.caller.user))


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
    return json(await _profile_json(request, user))


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
    await check_master_password(request, Body.of(request))
    return json({"object": "masterPasswordPolicy"})


@bp.post("/password")
@authorized
async def change_password(request: Request) -> HTTPResponse:
    """New hash and key; every session ends."""
    body = Body.of(request)
    await check_master_password(request, body)
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
    await check_master_password(request, Body.of(request))
    caller = request.ctx.caller
    async with publish.write(request.app.ctx.pool, caller.device_identifier) as conn:
        await users.reset_security_stamp(conn, caller.user_id)
    return empty(status=200)


@bp.post("/kdf")
@authorized
async def change_kdf(request: Request) -> HTTPResponse:
    """New KDF settings, and the hash and key made with them; every session ends. Newer clients
    nest the settings in authenticationData and unlockData, which must agree."""
    body = Body.of(request)
    await check_master_password(request, body)
    auth, unlock = body.object("authenticationData"), body.object("unlockData")
    if auth and unlock:
        kdf, unlock_kdf = auth.object("kdf", required=True), unlock.object("kdf", required=True)
        if kdf.raw != unlock_kdf.raw:
            raise ApiError("The KDF settings of authentication and unlock data differ.", field="kdf")
        settings = {"kdf_type": kdf.int("kdfType", required=True),
                    "kdf_iterations": kdf.int("iterations", required=True),
                    "kdf_memory": kdf.int("memory"), "kdf_parallelism": kdf.int("parallelism")}
        new_hash = auth.str("masterPasswordAuthenticationHash", required=True, max_length=1024)
        key = unlock.str("masterKeyWrappedUserKey", required=True, max_length=10_000)
    else:
        settings = {"kdf_type": body.int("kdf", required=True),
                    "kdf_iterations": body.int("kdfIterations", required=True),
                    "kdf_memory": body.int("kdfMemory"), "kdf_parallelism": body.int("kdfParallelism")}
        new_hash = body.str("newMasterPasswordHash", required=True, max_length=1024)
        key = body.str("key", required=True, max_length=10_000)
    if settings["kdf_type"] != KDF_ARGON2ID:
        settings["kdf_memory"] = settings["kdf_parallelism"] = None
    user = request.ctx.caller.user
    Registration(user["email"], new_hash, key, None, None, **settings).validate()
    password_hash = await hash_password(new_hash)
    async with publish.write(request.app.ctx.pool, request.ctx.caller.device_identifier) as conn:
        await users.change_kdf(conn, user["id"], password_hash, key, settings)
    return empty(status=200)


@bp.put("/avatar")
@bp.post("/avatar", name="update_avatar_by_post")
@authorized
async def update_avatar(request: Request) -> HTTPResponse:
    color = Body.of(request).str("avatarColor", max_length=7)
    if color is not None and not _AVATAR_COLOR.fullmatch(color):
        raise ApiError("AvatarColor must be a color such as #1a2b3c.", field="avatarColor")
    caller = request.ctx.caller
    async with publish.write(request.app.ctx.pool, caller.device_identifier) as conn:
        user = await users.set_avatar_color(conn, caller.user_id, color)
    return json(await _profile_json(request, user))


def _api_key_json(user: asyncpg.Record) -> dict[str, Any]:
    return {"apiKey": user["api_key"], "revisionDate": iso(user["updated_at"]), "object": "apiKey"}


@bp.post("/api-key")
@authorized
async def api_key(request: Request) -> HTTPResponse:
    """The personal API key (client_id user.<id>), shown after the master password."""
    await check_master_password(request, Body.of(request))
    async with publish.write(request.app.ctx.pool, request.ctx.caller.device_identifier) as conn:
        return json(_api_key_json(await users.api_key(conn, request.ctx.caller.user_id)))


@bp.post("/rotate-api-key")
@authorized
async def rotate_api_key(request: Request) -> HTTPResponse:
    await check_master_password(request, Body.of(request))
    async with publish.write(request.app.ctx.pool, request.ctx.caller.device_identifier) as conn:
        return json(_api_key_json(await users.rotate_api_key(conn, request.ctx.caller.user_id)))


@bp.delete("")
@bp.post("/delete", name="delete_account_by_post")
@authorized
async def delete_account(request: Request) -> HTTPResponse:
    """The account, its vault and devices, for good; every session of it ends."""
    await check_master_password(request, Body.of(request))
    async with publish.write(request.app.ctx.pool, request.ctx.caller.device_identifier) as conn:
        await users.delete_account(conn, request.ctx.caller.user_id)
    return empty(status=200)
