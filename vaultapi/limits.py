"""How often a client address and an account may try a master password (or an API key), an
address register or ask to log in with a device, and a user import.

The settings are Vaultwarden's: a token bucket of LOGIN_RATELIMIT_MAX_BURST attempts that
refills one attempt every LOGIN_RATELIMIT_SECONDS. pgwarden keeps one bucket per client address
and one per account (an email, known or not, so unknown emails behave alike), in PostgreSQL, so
every API replica counts the same attempts. Every attempt counts, successful or not, and so does a
refused one (a client that keeps trying waits longer); a verified password refills its account's
bucket, never its address's: an attacker with an account of their own could otherwise reset the
count of the address they guess from.

Imports take the same kind of bucket, one per user, with settings of their own
(IMPORT_RATELIMIT_MAX_BURST, IMPORT_RATELIMIT_SECONDS): each writes thousands of rows, so one
user importing again and again would take the database from everyone else.

Each process takes from the buckets through its vaultapi.limiter.Limiter, which refuses from memory
an attempt against a bucket it has just seen empty.
"""

from __future__ import annotations

import functools
import ipaddress
import math
from typing import Any

from sanic import Request

from vaultapi.client import client_address
from vaultapi.errors import TooManyRequests

__all__ = ["address_key", "auth_request_attempt", "import_attempt", "mail_request", "paced_import", "paces_imports",
           "password_attempt", "password_verified", "registration_attempt"]

ADDRESS = "address"
ACCOUNT = "account"
REGISTRATION = "registration"
MAIL_FROM = "mail-from"
MAIL_TO = "mail-to"
AUTH_REQUEST = "auth-request"
IMPORT = "import"


def address_key(address: str) -> str:
    """The bucket of a client address. An IPv6 client usually holds a whole /64, so the /64 is
    one client; an IPv4 address mapped into IPv6 is the IPv4 address."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _account_key(email: str) -> str:
    return email.strip().lower()


async def _take(request: Request, *keys: tuple[str, str]) -> None:
    config = request.app.ctx.config
    await _take_paced(request, keys, config.login_ratelimit_seconds, config.login_ratelimit_max_burst,
                      "Too many attempts")


async def _take_paced(request: Request, keys: tuple[tuple[str, str], ...], period: int, burst: int,
                      refusal: str) -> None:
    wait = await request.app.ctx.limiter.take(keys, period=period, burst=burst)
    if wait:
        seconds = max(1, math.ceil(wait))
        raise TooManyRequests(f"{refusal}. Try again in {seconds} seconds.", retry_after=seconds)


async def password_attempt(request: Request, email: str) -> None:
    """Count one master password attempt for the account behind `email`; 429 when over a limit.
    Call it before the password is hashed, so a refused attempt costs no hashing."""
    await _take(request, (ADDRESS, address_key(client_address(request))), (ACCOUNT, _account_key(email)))


async def password_verified(request: Request, email: str) -> None:
    """The right password: the account's count starts afresh."""
    await request.app.ctx.limiter.reset((ACCOUNT, _account_key(email)))


async def registration_attempt(request: Request) -> None:
    """Count one registration from the client's address: each tells whether an email is taken."""
    await _take(request, (REGISTRATION, address_key(client_address(request))))


async def mail_request(request: Request, recipient: str) -> None:
    """Count one request that mails an address of the caller's choosing (a password hint, a
    verification link, a setup or email change code), per client address and per recipient:
    nobody floods a mailbox through pgwarden."""
    await _take(request, (MAIL_FROM, address_key(client_address(request))), (MAIL_TO, _account_key(recipient)))


async def auth_request_attempt(request: Request) -> None:
    """Count one login-with-device request from the client's address: each one notifies every
    device of an account, and tells whether an email has an account with that device."""
    await _take(request, (AUTH_REQUEST, address_key(client_address(request))))


async def import_attempt(request: Request) -> None:
    """Count one import by the signed-in caller (personal and organization imports alike), once
    per request; 429 when the caller's bucket is empty. vaultapi.app calls it before the body is
    read, so a refused import costs neither the upload nor its parsing."""
    if getattr(request.ctx, "import_counted", False):
        return
    request.ctx.import_counted = True
    config = request.app.ctx.config
    await _take_paced(request, ((IMPORT, str(request.ctx.caller.user_id)),), config.import_ratelimit_seconds,
                      config.import_ratelimit_max_burst, "Too many imports")


def paced_import(handler: Any) -> Any:
    """Mark a route (under :func:`vaultapi.auth.authorized`) as an import: paced per user."""

    @functools.wraps(handler)
    async def paced(request: Request, *args: Any, **kwargs: Any) -> Any:
        # counted already when the request has a body: before it was read (vaultapi.app)
        await import_attempt(request)
        return await handler(request, *args, **kwargs)

    paced.paces_imports = True  # type: ignore[attr-defined]
    return paced


def paces_imports(handler: Any) -> bool:
    """Whether a route's handler is wrapped by :func:`paced_import`."""
    return getattr(handler, "paces_imports", False)
