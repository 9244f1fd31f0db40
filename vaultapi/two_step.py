"""Two-step login at the token endpoint: the challenge, the check of a code, remembered devices.

A password grant for an account with an enabled provider is answered, until it carries a valid
`twoFactorProvider` and `twoFactorToken`, with the challenge the clients expect (a 400 with
`TwoFactorProviders2`). Each attempt has already counted against the login limits
(vaultapi.limits) before its password was checked, and the account's count starts afresh only
once the second step passed too: knowing the password does not buy more guesses at the code.

Rules of the Bitwarden server: an authenticator code is accepted one 30 s step either side of
now and refused again for two minutes once used; an emailed code has 6 digits, works once and
for 5 minutes; the recovery code turns every provider off (and the login goes on); a remember
token (`twoFactorRemember=1`) lets the same device skip the second step for 30 days, until the
account's security stamp changes.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import pyotp
from sanic import Request

from vaultapi import webauthn
from vaultapi.errors import GrantError
from vaultapi.mail import messages
from vaultapi.mail.outbox import enqueue
from vaultapi.models import two_factor
from vaultapi.models.two_factor import AUTHENTICATOR, EMAIL, RECOVERY_CODE, REMEMBER, WEBAUTHN

__all__ = [
    "EMAIL_CODE_LIFETIME",
    "TwoFactorRequired",
    "check_authenticator_code",
    "recovered",
    "redacted_email",
    "second_step",
    "send_email_code",
]

#: seconds an emailed code works
EMAIL_CODE_LIFETIME = 300
#: the purpose under which a login's emailed code is kept
LOGIN_EMAIL_PURPOSE = "2fa-email"

_INVALID = "Two-step token is invalid. Try again."


class TwoFactorRequired(GrantError):
    """The challenge: which providers the account has, with what each needs to be answered."""

    def __init__(self, challenge: dict[str, Any]) -> None:
        super().__init__("Two factor required.")
        self.challenge = challenge

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "error_description": self.message, **self.challenge}


async def second_step(request: Request, user: asyncpg.Record, device_identifier: str) -> str | None:
    """Pass a password grant through the account's second step: returns a new remember token
    when the client asked for one, raises the challenge or a refusal otherwise."""
    providers = two_factor.enabled_providers(user)
    if not providers:
        return None
    form = request.form or {}
    kind_text = (form.get("twoFactorProvider") or "").strip()
    token = (form.get("twoFactorToken") or "").strip()
    if not kind_text or not token or not kind_text.isdigit():
        raise TwoFactorRequired(await _challenge(request, user, providers))
    if len(token) > 8192:
        raise GrantError(_INVALID)
    kind = int(kind_text)
    if not await _verify(request, user, providers, kind, token, device_identifier):
        if kind == REMEMBER:
            # an expired remember token: the device is asked for a code, not refused
            raise TwoFactorRequired(await _challenge(request, user, providers))
        raise GrantError(_INVALID)
    if form.get("twoFactorRemember") == "1" and kind != REMEMBER:
        return request.app.ctx.purpose_tokens.issue(
            "2fa-remember", str(user["id"]), device=device_identifier, sstamp=str(user["security_stamp"]))
    return None


async def _verify(request: Request, user: asyncpg.Record, providers: dict[int, dict[str, Any]], kind: int,
                  token: str, device_identifier: str) -> bool:
    pool = request.app.ctx.pool
    if kind == REMEMBER:
        claims = await request.app.ctx.purpose_tokens.claims("2fa-remember", token)
        return bool(claims) and (claims["sub"], claims.get("device"), claims.get("sstamp")) == (
            str(user["id"]), device_identifier, str(user["security_stamp"]))
    if kind == RECOVERY_CODE:
        if await two_factor.recover(pool, user["id"], token):
            await recovered(request, user)
            return True
        return False
    if kind not in providers:
        return False
    if kind == AUTHENTICATOR:
        return await check_authenticator_code(pool, user["id"], providers[kind]["key"], token)
    if kind == EMAIL:
        return await two_factor.consume_code(pool, user["id"], LOGIN_EMAIL_PURPOSE, token)
    if kind == WEBAUTHN:
        return await webauthn.verify_login(request, user, providers[kind], token)
    return False


async def check_authenticator_code(pool: asyncpg.Pool, user_id: Any, key: str, code: str) -> bool:
    """A code of the authenticator app with this key, one step of drift either way, not used
    within the replay window."""
    code = code.replace(" ", "")
    if not (code.isdigit() and len(code) == 6):
        return False
    if not pyotp.TOTP(key).verify(code, valid_window=1):
        return False
    return await two_factor.totp_code_unused(pool, user_id, code)


async def _challenge(request: Request, user: asyncpg.Record, providers: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """What the Bitwarden server answers: every provider's parameters (null when it needs none)."""
    params: dict[str, Any] = {}
    for kind in sorted(providers):
        data = providers[kind]
        if kind == EMAIL:
            params[str(kind)] = {"Email": redacted_email(data["email"])}
        elif kind == WEBAUTHN:
            params[str(kind)] = await webauthn.login_options(request, user, data)
        else:
            params[str(kind)] = None
    challenge: dict[str, Any] = {"TwoFactorProviders": list(params), "TwoFactorProviders2": params}
    if EMAIL in providers:
        challenge["SsoEmail2faSessionToken"] = request.app.ctx.purpose_tokens.issue(
            "2fa-email-session", str(user["id"]))
        challenge["Email"] = user["email"]
    challenge["MasterPasswordPolicy"] = {"Object": "masterPasswordPolicy"}
    return challenge


def redacted_email(address: str) -> str:
    """As the Bitwarden server shows a two-step address: the start of its local part, then stars."""
    local, _, domain = address.partition("@")
    shown = local[:2] if len(local) > 4 else local[:1] if len(local) > 2 else ""
    return f"{shown}{'*' * (len(local) - len(shown))}@{domain}"


async def send_email_code(request: Request, user_id: Any, address: str, purpose: str = LOGIN_EMAIL_PURPOSE) -> None:
    """Mail a fresh 6-digit code to the address; the code and its mail commit together."""
    code = two_factor.new_numeric_code()
    async with request.app.ctx.pool.acquire() as conn, conn.transaction():
        await two_factor.issue_code(conn, user_id, purpose, code, EMAIL_CODE_LIFETIME)
        await enqueue(conn, messages.two_factor_code(address, request.app.ctx.config.domain, code))


async def recovered(request: Request, user: asyncpg.Record) -> None:
    """The recovery code was used: the account's owner hears of it."""
    if request.app.ctx.config.mail_enabled:
        await enqueue(request.app.ctx.pool, messages.two_factor_recovered(user["email"], request.app.ctx.config.domain))
