"""Identity: prelogin, the OAuth token endpoint, and registration."""

from __future__ import annotations

from typing import Any

import asyncpg
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from core.access import access_claims
from core.tokens import TokenError
from vaultapi import limits
from vaultapi.auth import hash_refresh_token, new_refresh_token
from vaultapi.body import Body
from vaultapi.errors import TOKEN_PATH, ApiError, GrantError
from vaultapi.routes.sends import send_access_grant
from vaultapi.models import devices, users
from vaultapi.passwords import verify_password
from vaultapi.registration import KDF_PBKDF2, Registration, register
from vaultapi.stand_in import stand_in_kdf

__all__ = ["bp"]

bp = Blueprint("identity")

_WRONG_PASSWORD = "Username or password is incorrect. Try again."


# ---- prelogin ------------------------------------------------------------------------------

@bp.post("/identity/accounts/prelogin/password")
@bp.post("/identity/accounts/prelogin", name="prelogin_legacy")
@bp.post("/api/accounts/prelogin", name="prelogin_api")
async def prelogin(request: Request) -> HTTPResponse:
    email = Body.of(request).str("email", required=True, max_length=256)
    user = await users.find_by_email(request.app.ctx.pool, email)
    # an unknown email gets stand-in settings, so prelogin does not reveal who has an account
    kdf = users.kdf_json(user) if user else stand_in_kdf(request.app.ctx.prelogin_secret, email)
    return json({
        "kdfSettings": kdf,
        "salt": email.strip().lower(),
        "kdf": kdf["kdfType"],
        "kdfIterations": kdf["iterations"],
        "kdfMemory": kdf["memory"],
        "kdfParallelism": kdf["parallelism"],
    })


# ---- token endpoint ------------------------------------------------------------------------

def _form(request: Request, name: str, *, required: bool = True, max_length: int = 1024) -> str:
    value = request.form.get(name) if request.form else None
    if value is None or not value.strip():
        if required:
            raise GrantError(f"The {name} field is required.", "invalid_request")
        return ""
    if len(value) > max_length:
        raise GrantError(f"{name} is too long.", "invalid_request")
    return value


@bp.post(TOKEN_PATH)
async def token(request: Request) -> HTTPResponse:
    grant_type = _form(request, "grant_type")
    if grant_type == "password":
        return await _password_grant(request)
    if grant_type == "send_access":
        return await send_access_grant(request, _form(request, "send_id", max_length=64),
                                       _form(request, "password_hash_b64", required=False) or None)
    if grant_type == "refresh_token":
        return await _refresh_grant(request)
    raise GrantError(f"Grant type {grant_type} is not supported.", "unsupported_grant_type")


async def _password_grant(request: Request) -> HTTPResponse:
    email = _form(request, "username", max_length=256)
    password = _form(request, "password")
    client_id = _form(request, "client_id", max_length=64)
    identifier = _form(request, "deviceIdentifier", max_length=255)
    name = _form(request, "deviceName", max_length=255)
    try:
        device_type = int(_form(request, "deviceType", max_length=8))
    except ValueError:
        raise GrantError("deviceType must be a number.", "invalid_request") from None

    await limits.password_attempt(request, email)
    pool = request.app.ctx.pool
    user = await users.find_by_email(pool, email)
    if not await verify_password(user["password_hash"] if user else None, password) or user is None:
        raise GrantError(_WRONG_PASSWORD)
    await limits.password_verified(request, email)
    refresh_token = new_refresh_token()
    await devices.sign_in(pool, user, identifier, device_type, name, hash_refresh_token(refresh_token),
                          request.app.ctx.config.refresh_token_lifetime)
    return json(_token_reply(request, user, identifier, client_id, refresh_token))


async def _refresh_grant(request: Request) -> HTTPResponse:
    old = _form(request, "refresh_token")
    refresh_token = new_refresh_token()
    try:
        # the account as the exchange saw it: the new access token carries the stamp it checked
        user, identifier = await devices.exchange_refresh_token(
            request.app.ctx.pool, hash_refresh_token(old), hash_refresh_token(refresh_token),
            request.app.ctx.config.refresh_token_lifetime)
    except devices.RefreshRefused:
        raise GrantError("The refresh token is invalid or was revoked.") from None
    client_id = _form(request, "client_id", required=False, max_length=64) or "web"
    return json(_token_reply(request, user, identifier, client_id, refresh_token))


def _token_reply(
    request: Request, user: asyncpg.Record, identifier: str, client_id: str, refresh_token: str
) -> dict[str, Any]:
    ctx = request.app.ctx
    kdf = users.kdf_json(user)
    unlock = users.master_password_unlock_json(user)
    return {
        "access_token": ctx.issuer.issue(access_claims(user, identifier, client_id)),
        "expires_in": ctx.issuer.lifetime,
        "token_type": "Bearer",
        "refresh_token": refresh_token,
        "scope": "api offline_access",
        "Key": user["key"],
        "PrivateKey": user["private_key"],
        "Kdf": kdf["kdfType"],
        "KdfIterations": kdf["iterations"],
        "KdfMemory": kdf["memory"],
        "KdfParallelism": kdf["parallelism"],
        "ResetMasterPassword": False,
        "ForcePasswordReset": False,
        "MasterPasswordPolicy": {"Object": "masterPasswordPolicy"},
        "AccountKeys": users.account_keys_json(user),
        "UserDecryptionOptions": {
            "HasMasterPassword": True,
            "MasterPasswordUnlock": {
                "Kdf": {
                    "KdfType": kdf["kdfType"],
                    "Iterations": kdf["iterations"],
                    "Memory": kdf["memory"],
                    "Parallelism": kdf["parallelism"],
                },
                "MasterKeyEncryptedUserKey": unlock["masterKeyEncryptedUserKey"],
                "MasterKeyWrappedUserKey": unlock["masterKeyWrappedUserKey"],
                "Salt": unlock["salt"],
            },
            "Object": "userDecryptionOptions",
        },
    }


# ---- registration --------------------------------------------------------------------------

def _require_signups(request: Request) -> None:
    if not request.app.ctx.config.signups_allowed:
        raise ApiError("Registration not allowed or user already exists.")


def _kdf_fields(body: Body) -> dict[str, Any]:
    nested = body.object("kdf") if isinstance(body.get("kdf"), dict) else None
    if nested is not None:
        return {
            "kdf_type": nested.int("kdfType", required=True),
            "kdf_iterations": nested.int("iterations", required=True),
            "kdf_memory": nested.int("memory"),
            "kdf_parallelism": nested.int("parallelism"),
        }
    return {
        "kdf_type": body.int("kdf", default=KDF_PBKDF2),
        "kdf_iterations": body.int("kdfIterations", default=600_000),
        "kdf_memory": body.int("kdfMemory"),
        "kdf_parallelism": body.int("kdfParallelism"),
    }


async def _create(request: Request, account: Registration) -> HTTPResponse:
    await limits.registration_attempt(request)
    await register(request.app.ctx.pool, account)
    return json({"object": "register", "captchaBypassToken": ""})


@bp.post("/identity/accounts/register")
@bp.post("/api/accounts/register", name="register_legacy_api")
async def register_legacy(request: Request) -> HTTPResponse:
    _require_signups(request)
    body = Body.of(request)
    keys = body.object("keys")
    return await _create(request, Registration(
        email=body.str("email", required=True, max_length=256),
        name=body.str("name", max_length=256),
        hint=body.str("masterPasswordHint", max_length=256),
        master_password_hash=body.str("masterPasswordHash", required=True, max_length=1024),
        key=body.str("key", required=True, max_length=10_000),
        public_key=keys.str("publicKey", required=True, max_length=10_000) if keys else None,
        encrypted_private_key=keys.str("encryptedPrivateKey", required=True, max_length=10_000) if keys else None,
        **_kdf_fields(body),
    ))


@bp.post("/identity/accounts/register/send-verification-email")
async def send_verification_email(request: Request) -> HTTPResponse:
    """No mail is sent: the reply carries the token itself, so the client goes straight on."""
    _require_signups(request)
    body = Body.of(request)
    email = body.str("email", required=True, max_length=256).strip().lower()
    Registration(email, "", "", None, None).validate()
    return json(request.app.ctx.registration_issuer.issue({"sub": email, "name": body.str("name") or ""}))


@bp.post("/identity/accounts/register/finish")
async def register_finish(request: Request) -> HTTPResponse:
    _require_signups(request)
    body = Body.of(request)
    email = body.str("email", required=True, max_length=256)
    try:
        claims = await request.app.ctx.registration_verifier.verify(
            body.str("emailVerificationToken", required=True, max_length=4096))
    except TokenError:
        raise ApiError("Invalid or expired email verification token.", field="emailVerificationToken") from None
    if claims["sub"] != email.strip().lower():
        raise ApiError("The email verification token is for another address.", field="emailVerificationToken")

    # current clients nest the password data; older ones send flat fields
    authentication = body.object("masterPasswordAuthentication")
    unlock = body.object("masterPasswordUnlock")
    password_hash = (authentication.str("masterPasswordAuthenticationHash", max_length=1024)
                     if authentication else body.str("masterPasswordHash", max_length=1024))
    key = (unlock.str("masterKeyWrappedUserKey", max_length=10_000)
           if unlock else body.str("userSymmetricKey", max_length=10_000))
    if not password_hash or not key:
        raise ApiError("The master password hash and the user key are required.", field="masterPasswordHash")
    keys = body.object("userAsymmetricKeys")
    return await _create(request, Registration(
        email=email,
        name=claims.get("name") or None,
        hint=body.str("masterPasswordHint", max_length=256),
        master_password_hash=password_hash,
        key=key,
        public_key=keys.str("publicKey", required=True, max_length=10_000) if keys else None,
        encrypted_private_key=keys.str("encryptedPrivateKey", required=True, max_length=10_000) if keys else None,
        **_kdf_fields(unlock if unlock else body),
    ))
