"""Identity: prelogin, the OAuth token endpoint, and registration."""

from __future__ import annotations

import hmac
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty, json

from core.access import access_claims
from core.tokens import TokenError
from vaultapi import limits
from vaultapi.auth import hash_refresh_token, new_refresh_token
from vaultapi.body import Body
from vaultapi.client import client_address
from vaultapi.errors import TOKEN_PATH, ApiError, GrantError
from vaultapi.mail import messages
from vaultapi.mail.outbox import enqueue
from vaultapi.models import auth_requests, devices, users
from vaultapi.passwords import verify_password
from vaultapi.registration import KDF_PBKDF2, Registration, register
from vaultapi.stand_in import stand_in_kdf
from vaultapi.two_step import second_step

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
    if grant_type == "password" and _form(request, "authRequest", required=False, max_length=64):
        return await _auth_request_grant(request)
    if grant_type == "password":
        return await _password_grant(request)
    if grant_type == "client_credentials":
        return await _api_key_grant(request)
    if grant_type == "refresh_token":
        return await _refresh_grant(request)
    raise GrantError(f"Grant type {grant_type} is not supported.", "unsupported_grant_type")


async def _password_grant(request: Request) -> HTTPResponse:
    email = _form(request, "username", max_length=256)
    password = _form(request, "password")
    client_id = _form(request, "client_id", max_length=64)
    identifier, name, device_type = _device_fields(request)
    await limits.password_attempt(request, email)
    pool = request.app.ctx.pool
    user = await users.find_by_email(pool, email)
    if not await verify_password(user["password_hash"] if user else None, password) or user is None:
        raise GrantError(_WRONG_PASSWORD)
    # the account's count starts afresh only once the second step passed too
    remember_token = await second_step(request, user, identifier)
    await limits.password_verified(request, email)
    await _notice_new_device(request, user, identifier, name)
    refresh_token = new_refresh_token()
    await devices.sign_in(pool, user, identifier, device_type, name, hash_refresh_token(refresh_token),
                          request.app.ctx.config.refresh_token_lifetime)
    return json(_signed_in_reply(request, user, identifier, client_id, refresh_token, remember_token))


def _signed_in_reply(request: Request, user: asyncpg.Record, identifier: str, client_id: str, refresh_token: str,
                     remember_token: str | None) -> dict[str, Any]:
    reply = _token_reply(request, user, identifier, client_id, refresh_token)
    if remember_token:
        reply["TwoFactorToken"] = remember_token
    return reply


async def _notice_new_device(request: Request, user: asyncpg.Record, identifier: str, name: str) -> None:
    """With mail, a login from a device the account has not seen is told to its owner (not the
    account's first device: that is the registration's own login)."""
    if not request.app.ctx.config.mail_enabled:
        return
    pool = request.app.ctx.pool
    known = await pool.fetchrow(
        "SELECT count(*) FILTER (WHERE identifier = $2) AS this, count(*) AS every FROM devices WHERE user_id = $1",
        user["id"], identifier)
    if known["this"] == 0 and known["every"] > 0:
        await enqueue(pool, messages.new_device(user["email"], request.app.ctx.config.domain, name,
                                                client_address(request), datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")))


def _device_fields(request: Request) -> tuple[str, str, int]:
    """The device a grant signs in: identifier, name and type."""
    identifier = _form(request, "deviceIdentifier", max_length=255)
    name = _form(request, "deviceName", max_length=255)
    try:
        return identifier, name, int(_form(request, "deviceType", max_length=8))
    except ValueError:
        raise GrantError("deviceType must be a number.", "invalid_request") from None


async def _auth_request_grant(request: Request) -> HTTPResponse:
    """Login with device: the password is the access code of an approved auth request
    (vaultapi/routes/auth_requests.py), spent by this login. Counted like a password."""
    email = _form(request, "username", max_length=256)
    code = _form(request, "password", max_length=64)
    client_id = _form(request, "client_id", max_length=64)
    identifier, name, device_type = _device_fields(request)
    try:
        request_id = uuid.UUID(_form(request, "authRequest", max_length=64))
    except ValueError:
        raise GrantError(_WRONG_PASSWORD) from None
    await limits.password_attempt(request, email)
    pool = request.app.ctx.pool
    user = await users.find_by_email(pool, email)
    if user is None or not await auth_requests.usable_for_login(pool, request_id, user["id"], identifier, code):
        raise GrantError(_WRONG_PASSWORD)
    # a second factor, when the account has one, is asked as after a password (Bitwarden spares
    # only API key logins): the request is spent by the login that completes
    remember_token = await second_step(request, user, identifier)
    await limits.password_verified(request, email)
    if not await auth_requests.use_for_login(pool, request_id, user["id"], identifier, code):
        raise GrantError(_WRONG_PASSWORD)
    refresh_token = new_refresh_token()
    await devices.sign_in(pool, user, identifier, device_type, name, hash_refresh_token(refresh_token),
                          request.app.ctx.config.refresh_token_lifetime)
    return json(_signed_in_reply(request, user, identifier, client_id, refresh_token, remember_token))


async def _api_key_grant(request: Request) -> HTTPResponse:
    """The personal API key (client_credentials, client_id ``user.<id>``): an access token and no
    refresh token; the client asks again with its key. Counted like a password, per client id."""
    client_id = _form(request, "client_id", max_length=64)
    secret = _form(request, "client_secret", max_length=64)
    scope = _form(request, "scope", required=False, max_length=256)
    if scope and "api" not in scope.split():
        raise GrantError("The scope must be api.", "invalid_scope")
    identifier, name, device_type = _device_fields(request)
    await limits.password_attempt(request, client_id)
    prefix, _, user_id = client_id.partition(".")
    try:
        user = await users.find_by_id(request.app.ctx.pool, uuid.UUID(user_id)) if prefix == "user" else None
    except ValueError:
        user = None
    # compared whether or not there is a key, so an unknown client takes as long
    expected = (user["api_key"] if user else None) or secrets.token_urlsafe(22)
    if user is None or not hmac.compare_digest(expected.encode(), secret.encode()):
        raise GrantError("The client id or secret is invalid.", "invalid_client")
    await limits.password_verified(request, client_id)
    await devices.sign_in(request.app.ctx.pool, user, identifier, device_type, name, None,
                          request.app.ctx.config.refresh_token_lifetime)
    reply = _token_reply(request, user, identifier, client_id, "")
    del reply["refresh_token"]
    reply["scope"] = "api"
    return json(reply)


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
    if request.app.ctx.config.mail_enabled:
        # it proves no address: with mail, every account is made through the emailed link
        raise ApiError("Registration needs email verification: use a current client.")
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
    """Without mail the reply carries the token itself, so the client goes straight on; with
    mail the token goes to the address and the reply is empty."""
    _require_signups(request)
    body = Body.of(request)
    email = body.str("email", required=True, max_length=256).strip().lower()
    Registration(email, "", "", None, None).validate()
    token = request.app.ctx.registration_issuer.issue({"sub": email, "name": body.str("name", max_length=256) or ""})
    if not request.app.ctx.config.mail_enabled:
        return json(token)
    return await _mail_verification(request, email, token)


async def _mail_verification(request: Request, email: str, token: str) -> HTTPResponse:
    """The link to finish registering, to the address; an address with an account gets nothing
    and the same empty reply, so the reply does not tell who has an account."""
    await limits.mail_request(request, email)
    pool = request.app.ctx.pool
    if await users.find_by_email(pool, email) is None:
        await enqueue(pool, messages.registration(email, request.app.ctx.config.domain, token))
    return empty(status=204)


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
