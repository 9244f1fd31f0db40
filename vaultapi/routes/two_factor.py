"""Two-step login settings, as the web vault and the desktop app call them (/api/two-factor/...).

Reading a provider's settings (get-authenticator, get-email, get-webauthn, get-recover) takes the
master password hash again and hands back a `userVerificationToken` (30 minutes, bound to the
user, the provider and, for the authenticator, the key shown); the change that follows takes
that token or, from older clients, the master password hash once more. Every password or code
checked here counts against the login limits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg
import pyotp
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty, json

from vaultapi import limits, two_step, webauthn
from vaultapi.auth import authorized, check_master_password
from vaultapi.body import Body, email_field
from vaultapi.errors import ApiError
from vaultapi.mail.outbox import require_mail
from vaultapi.models import two_factor, users
from vaultapi.models.two_factor import AUTHENTICATOR, EMAIL, WEBAUTHN
from vaultapi.passwords import verify_password

__all__ = ["bp"]

bp = Blueprint("two_factor", url_prefix="/api/two-factor")

#: the providers pgwarden offers; Duo and YubiKey OTP need outside services
PROVIDERS = (AUTHENTICATOR, EMAIL, WEBAUTHN)
_SETUP_EMAIL_PURPOSE = "2fa-setup-email"


def _provider_json(user: asyncpg.Record, kind: int) -> dict[str, Any]:
    return {"enabled": kind in two_factor.enabled_providers(user), "type": kind, "object": "twoFactorProvider"}


async def _verified(request: Request, body: Body, kind: int, key: str | None = None) -> asyncpg.Record:
    """The caller, once it proved itself for this provider: a userVerificationToken from the
    provider's get call, or the master password hash. The account as it is now."""
    caller = request.ctx.caller
    token = body.str("userVerificationToken", max_length=4096)
    if token:
        claims = await request.app.ctx.purpose_tokens.claims("2fa-setup", token)
        user = caller.user
        if not claims or (claims["sub"], claims.get("type"), claims.get("key"), claims.get("sstamp")) != (
                str(user["id"]), kind, key, str(user["security_stamp"])):
            raise ApiError("User verification failed.", field="userVerificationToken")
    else:
        await check_master_password(request, body)
    return await users.find_by_id(request.app.ctx.pool, caller.user_id)


def _verification_token(request: Request, user: asyncpg.Record, kind: int, key: str | None = None) -> str:
    return request.app.ctx.purpose_tokens.issue(
        "2fa-setup", str(user["id"]), type=kind, key=key, sstamp=str(user["security_stamp"]))


async def _read_settings(request: Request, kind: int,
                         shape: Callable[..., dict[str, Any]]) -> HTTPResponse:
    """A provider's settings, read with the master password, and the token for the change that follows."""
    await check_master_password(request, Body.of(request))
    user = request.ctx.caller.user
    return json(shape(user, userVerificationToken=_verification_token(request, user, kind)))


@bp.get("")
@authorized
async def providers(request: Request) -> HTTPResponse:
    user = request.ctx.caller.user
    enabled = two_factor.enabled_providers(user)
    data = [_provider_json(user, kind) for kind in PROVIDERS if kind in enabled]
    return json({"data": data, "object": "list", "continuationToken": None})


# ---- authenticator app -----------------------------------------------------------------------

def _authenticator_json(user: asyncpg.Record, key: str, **more: Any) -> dict[str, Any]:
    return {"enabled": AUTHENTICATOR in two_factor.enabled_providers(user), "key": key, **more,
            "object": "twoFactorAuthenticator"}


@bp.post("/get-authenticator")
@authorized
async def get_authenticator(request: Request) -> HTTPResponse:
    await check_master_password(request, Body.of(request))
    user = request.ctx.caller.user
    current = two_factor.enabled_providers(user).get(AUTHENTICATOR)
    # a new key until one is confirmed with a code (20 random bytes, base32)
    key = current["key"] if current else pyotp.random_base32(32)
    return json(_authenticator_json(user, key, userVerificationToken=_verification_token(request, user,
                                                                                        AUTHENTICATOR, key)))


@bp.route("/authenticator", methods=["PUT", "POST"])
@authorized
async def enable_authenticator(request: Request) -> HTTPResponse:
    body = Body.of(request)
    key = body.str("key", required=True, max_length=50).strip().replace(" ", "").upper()
    code = body.str("token", required=True, max_length=50)
    user = await _verified(request, body, AUTHENTICATOR, key)
    try:
        pyotp.TOTP(key).now()
    except (ValueError, TypeError):
        raise ApiError("Invalid key.", field="key") from None
    await limits.password_attempt(request, user["email"])
    if not await two_step.check_authenticator_code(request.app.ctx.pool, user["id"], key, code):
        raise ApiError("Invalid token.", field="token")
    user = await two_factor.enable(request.app.ctx.pool, user["id"], AUTHENTICATOR, {"key": key})
    return json(_authenticator_json(user, key))


@bp.delete("/authenticator")
@authorized
async def disable_authenticator(request: Request) -> HTTPResponse:
    body = Body.of(request)
    await _verified(request, body, AUTHENTICATOR, body.str("key", max_length=50))
    user = await two_factor.disable(request.app.ctx.pool, request.ctx.caller.user_id, AUTHENTICATOR)
    return json(_provider_json(user, AUTHENTICATOR))


@bp.route("/disable", methods=["PUT", "POST"])
@authorized
async def disable(request: Request) -> HTTPResponse:
    """Older clients turn any provider off here, with {type, masterPasswordHash}."""
    body = Body.of(request)
    kind = body.int("type", required=True)
    await check_master_password(request, body)
    user = await two_factor.disable(request.app.ctx.pool, request.ctx.caller.user_id, kind)
    return json(_provider_json(user, kind))


# ---- email -----------------------------------------------------------------------------------

def _email_json(user: asyncpg.Record, **more: Any) -> dict[str, Any]:
    current = two_factor.enabled_providers(user).get(EMAIL)
    return {"enabled": current is not None, "email": current["email"] if current else None, **more,
            "object": "twoFactorEmail"}


@bp.post("/get-email")
@authorized
async def get_email(request: Request) -> HTTPResponse:
    return await _read_settings(request, EMAIL, _email_json)


@bp.post("/send-email")
@authorized
async def send_setup_email(request: Request) -> HTTPResponse:
    """A code to the address being set up, to prove it reaches the user."""
    require_mail(request)
    body = Body.of(request)
    address = email_field(body, "email")
    user = await _verified(request, body, EMAIL)
    await limits.mail_request(request, address)
    await two_step.send_email_code(request, user["id"], address, f"{_SETUP_EMAIL_PURPOSE}:{address}")
    return empty(status=200)


@bp.route("/email", methods=["PUT", "POST"])
@authorized
async def enable_email(request: Request) -> HTTPResponse:
    require_mail(request)
    body = Body.of(request)
    address = email_field(body, "email")
    code = body.str("token", required=True, max_length=50)
    user = await _verified(request, body, EMAIL)
    await limits.password_attempt(request, user["email"])
    if not await two_factor.consume_code(request.app.ctx.pool, user["id"], f"{_SETUP_EMAIL_PURPOSE}:{address}", code):
        raise ApiError("Invalid token.", field="token")
    user = await two_factor.enable(request.app.ctx.pool, user["id"], EMAIL, {"email": address})
    return json(_email_json(user))


@bp.delete("/email")
@authorized
async def disable_email(request: Request) -> HTTPResponse:
    await _verified(request, Body.of(request), EMAIL)
    user = await two_factor.disable(request.app.ctx.pool, request.ctx.caller.user_id, EMAIL)
    return json(_provider_json(user, EMAIL))


@bp.post("/send-email-login")
async def send_login_email(request: Request) -> HTTPResponse:
    """Anonymous: the login page asks for the emailed code, proving the password again (or with
    the session token of the challenge). The same refusal whatever went wrong."""
    body = Body.of(request)
    email = body.str("email", required=True, max_length=256)
    await limits.password_attempt(request, email)
    user = await users.find_by_email(request.app.ctx.pool, email)
    session = body.str("ssoEmail2FaSessionToken", max_length=4096)
    if session:
        claims = await request.app.ctx.purpose_tokens.claims("2fa-email-session", session)
        proven = bool(claims) and user is not None and claims["sub"] == str(user["id"])
    else:
        proven = await verify_password(user["password_hash"] if user else None,
                                       body.str("masterPasswordHash", max_length=1024) or "")
    provider = two_factor.enabled_providers(user).get(EMAIL) if user and proven else None
    if provider is None or not request.app.ctx.config.mail_enabled:
        raise ApiError("Cannot send two-factor email.")
    await two_step.send_email_code(request, user["id"], provider["email"])
    return empty(status=200)


# ---- WebAuthn (FIDO2 security keys) ------------------------------------------------------------

def _webauthn_json(user: asyncpg.Record, **more: Any) -> dict[str, Any]:
    data = two_factor.enabled_providers(user).get(WEBAUTHN)
    keys = [{"name": key["name"], "id": key["id"], "migrated": False} for key in webauthn.keys_of(data)]
    return {"enabled": WEBAUTHN in two_factor.enabled_providers(user), "keys": keys, **more,
            "object": "twoFactorWebAuthn"}


@bp.post("/get-webauthn")
@authorized
async def get_webauthn(request: Request) -> HTTPResponse:
    return await _read_settings(request, WEBAUTHN, _webauthn_json)


@bp.post("/get-webauthn-challenge")
@authorized
async def webauthn_challenge(request: Request) -> HTTPResponse:
    user = await _verified(request, Body.of(request), WEBAUTHN)
    try:
        options = await webauthn.start_registration(request, user, two_factor.enabled_providers(user).get(WEBAUTHN))
    except webauthn.RegistrationRefused as refused:
        raise ApiError(str(refused)) from None
    return json({**options, "object": "twoFactorWebAuthnChallenge"})


@bp.route("/webauthn", methods=["PUT", "POST"])
@authorized
async def add_webauthn_key(request: Request) -> HTTPResponse:
    body = Body.of(request)
    key_id = body.int("id", required=True)
    if not 1 <= key_id <= webauthn.MAX_KEYS:
        raise ApiError("Invalid Key Id", field="id")
    name = body.str("name", max_length=50) or ""
    device_response = body.object("deviceResponse", required=True)
    user = await _verified(request, body, WEBAUTHN)
    try:
        data = await webauthn.finish_registration(request, user, two_factor.enabled_providers(user).get(WEBAUTHN),
                                                  key_id, name, device_response.raw)
    except webauthn.RegistrationRefused as refused:
        raise ApiError(str(refused)) from None
    user = await two_factor.enable(request.app.ctx.pool, user["id"], WEBAUTHN, data)
    return json(_webauthn_json(user))


@bp.delete("/webauthn")
@authorized
async def remove_webauthn_key(request: Request) -> HTTPResponse:
    body = Body.of(request)
    key_id = body.int("id", required=True)
    user = await _verified(request, body, WEBAUTHN)
    keys = webauthn.keys_of(two_factor.enabled_providers(user).get(WEBAUTHN))
    if not any(key["id"] == key_id for key in keys):
        raise ApiError("Unable to delete WebAuthn credential.")
    rest = [key for key in keys if key["id"] != key_id]
    pool = request.app.ctx.pool
    # the last key gone, the provider goes with it
    user = (await two_factor.enable(pool, user["id"], WEBAUTHN, {"keys": rest}) if rest
            else await two_factor.disable(pool, user["id"], WEBAUTHN))
    return json(_webauthn_json(user))


# ---- recovery code ---------------------------------------------------------------------------

@bp.post("/get-recover")
@authorized
async def get_recover(request: Request) -> HTTPResponse:
    await check_master_password(request, Body.of(request))
    user = await users.find_by_id(request.app.ctx.pool, request.ctx.caller.user_id)
    return json({"code": user["two_factor_recovery_code"], "object": "twoFactorRecover"})


@bp.post("/recover")
async def recover(request: Request) -> HTTPResponse:
    """Anonymous, from older clients' recovery page: email, master password hash and recovery
    code turn every provider off."""
    body = Body.of(request)
    email = body.str("email", required=True, max_length=256)
    password = body.str("masterPasswordHash", required=True, max_length=1024)
    code = body.str("recoveryCode", required=True, max_length=100)
    await limits.password_attempt(request, email)
    user = await users.find_by_email(request.app.ctx.pool, email)
    if not await verify_password(user["password_hash"] if user else None, password) or user is None \
            or not await two_factor.recover(request.app.ctx.pool, user["id"], code):
        raise ApiError("Invalid information. Try again.")
    await limits.password_verified(request, email)
    await two_step.recovered(request, user)
    return empty(status=200)
