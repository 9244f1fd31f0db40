"""The account settings that go through the account's mailbox: changing the email with a mailed
code, and the master password hint. Both need SMTP_HOST; without it they answer a 400 that is the
same for every address."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty

from vaultapi import limits, publish
from vaultapi.auth import authorized, check_master_password
from vaultapi.body import Body, email_field
from vaultapi.errors import ApiError
from vaultapi.mail import messages
from vaultapi.mail.outbox import enqueue, require_mail
from vaultapi.models import two_factor, users
from vaultapi.passwords import hash_password

__all__ = ["bp"]

bp = Blueprint("account_mail", url_prefix="/api/accounts")

#: seconds the mailed email change code works
EMAIL_CHANGE_CODE_LIFETIME = 300


@bp.post("/email-token")
@authorized
async def email_token(request: Request) -> HTTPResponse:
    """Mail a code to the new address. An address that has an account already gets no code: the
    current address is told instead, so the reply does not say who has an account."""
    require_mail(request)
    body = Body.of(request)
    new_email = email_field(body, "newEmail")
    await check_master_password(request, body)
    await limits.mail_request(request, new_email)
    user = request.ctx.caller.user
    domain = request.app.ctx.config.domain
    pool = request.app.ctx.pool
    if await users.find_by_email(pool, new_email) is not None:
        await enqueue(pool, messages.email_taken(user["email"], domain, new_email))
        return empty(status=200)
    code = two_factor.new_numeric_code()
    async with pool.acquire() as conn, conn.transaction():
        await two_factor.issue_code(conn, user["id"], f"change-email:{new_email}", code, EMAIL_CHANGE_CODE_LIFETIME)
        await enqueue(conn, messages.email_change(new_email, domain, code))
    return empty(status=200)


@bp.post("/email")
@authorized
async def change_email(request: Request) -> HTTPResponse:
    """The new address, proven by its code, with the master password re-derived for it (the
    email is the salt): new hash, new wrapped key, new security stamp; the other devices log out."""
    require_mail(request)
    body = Body.of(request)
    new_email = email_field(body, "newEmail")
    code = body.str("token", required=True, max_length=50)
    new_hash = body.str("newMasterPasswordHash", required=True, max_length=1024)
    key = body.str("key", required=True, max_length=10_000)
    await check_master_password(request, body)
    caller = request.ctx.caller
    password_hash = await hash_password(new_hash)
    async with publish.write(request.app.ctx.pool, caller.device_identifier) as conn:
        if not await two_factor.consume_code(conn, caller.user_id, f"change-email:{new_email}", code):
            raise ApiError("Invalid token.", field="token")
        await users.change_email(conn, caller.user_id, new_email, password_hash, key)
    return empty(status=200)


@bp.post("/password-hint")
async def password_hint(request: Request) -> HTTPResponse:
    """Anonymous: the hint goes to the account's address. The same 200 for an unknown address."""
    require_mail(request)
    email = email_field(Body.of(request), "email")
    await limits.mail_request(request, email)
    user = await users.find_by_email(request.app.ctx.pool, email)
    if user is not None:
        await enqueue(request.app.ctx.pool, messages.password_hint(
            user["email"], request.app.ctx.config.domain, user["password_hint"]))
    return empty(status=200)
