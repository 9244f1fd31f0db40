"""Sends: the owner's routes (list, get, create, upload a file, edit, remove the password,
delete) and the anonymous ones of whoever has the link (access, and a file Send's download).

The owner's file upload is a streamed route like an attachment's (vaultapi/routes/attachments.py).
A wrong password counts against the login limits of the caller's address and of the Send, as a
master password attempt does.
"""

from __future__ import annotations

import uuid

from sanic import Blueprint, Request

from core.access import bearer_token
from core.tokens import TokenError
from sanic.response import HTTPResponse, empty, json

from vaultapi import limits, publish
from vaultapi.auth import authorized
from vaultapi.body import Body
from vaultapi.body_limits import MULTIPART_OVERHEAD
from vaultapi.downloads import download_url
from vaultapi.errors import ApiError, GrantError, NotFound, Unauthorized
from vaultapi.models import sends
from vaultapi.models.sends import SendInput
from vaultapi.passwords import verify_password
from vaultapi.routes.attachments import DIRECT_UPLOAD, store_upload
from vaultapi.uploads import StreamedForm, limit_body

__all__ = ["bp", "send_access_grant"]

bp = Blueprint("sends", url_prefix="/api/sends")


def _list(rows: list) -> dict:
    return {"data": [sends.send_json(row) for row in rows], "object": "list", "continuationToken": None}


# ---- the owner's ---------------------------------------------------------------------------

@bp.get("")
@authorized
async def list_sends(request: Request) -> HTTPResponse:
    return json(_list(await sends.list_for(request.app.ctx.pool, request.ctx.caller.user_id)))


@bp.get("/<send_id:uuid>")
@authorized
async def get_send(request: Request, send_id: uuid.UUID) -> HTTPResponse:
    return json(sends.send_json(await sends.find(request.app.ctx.pool, send_id, request.ctx.caller.user_id)))


@bp.post("")
@authorized
async def create_send(request: Request) -> HTTPResponse:
    send = SendInput.parse(Body.of(request), creating=True)
    if send.type == sends.FILE:
        raise ApiError("File Sends are created with /api/sends/file/v2.", field="type")
    return json(sends.send_json(await _create(request, send)))


@bp.post("/file/v2")
@authorized
async def create_file_send(request: Request) -> HTTPResponse:
    send = SendInput.parse(Body.of(request), creating=True)
    if send.type != sends.FILE:
        raise ApiError("Only a file Send is created here.", field="type")
    row = await _create(request, send)
    domain = request.app.ctx.config.domain.rstrip("/")
    return json({"url": f"{domain}/api/sends/{row['id']}/file/{row['file_id']}", "fileUploadType": DIRECT_UPLOAD,
                 "sendResponse": sends.send_json(row), "object": "send-fileUpload"})


async def _create(request: Request, send: SendInput):
    caller = request.ctx.caller
    async with publish.write(request.app.ctx.pool, caller.device_identifier) as conn:
        return await sends.create(conn, request.app.ctx.config, caller.user_id, send)


@bp.post("/<send_id:uuid>/file/<file_id:str>", stream=True)
@authorized
async def upload_file(request: Request, send_id: uuid.UUID, file_id: str) -> HTTPResponse:
    """The announced file of a file Send: exactly the size announced."""
    caller, pool, store = request.ctx.caller, request.app.ctx.pool, request.app.ctx.store
    row = await sends.find(pool, send_id, caller.user_id)
    if row["file_id"] != file_id or row["file_uploaded"]:
        raise NotFound("Send file")
    limit_body(request, row["file_size"] + MULTIPART_OVERHEAD)
    form = StreamedForm(request)
    while (part := await form.next_part()) is not None and part.name != "data":
        pass
    if part is None:
        raise ApiError("The form holds no file (data).")
    size = await store_upload(request, row["file_key"], form, row["file_size"])
    try:
        await form.finish()
        if size != row["file_size"]:
            raise ApiError("The file is not the size announced.")
        async with publish.write(pool, caller.device_identifier) as conn:
            await sends.mark_file_uploaded(conn, send_id, caller.user_id, file_id, size)
    except BaseException:
        await store.delete([row["file_key"]])
        raise
    return empty(status=200)


@bp.put("/<send_id:uuid>")
@authorized
async def update_send(request: Request, send_id: uuid.UUID) -> HTTPResponse:
    send = SendInput.parse(Body.of(request), creating=False)
    caller = request.ctx.caller
    async with publish.write(request.app.ctx.pool, caller.device_identifier) as conn:
        return json(sends.send_json(await sends.update(conn, send_id, caller.user_id, send)))


@bp.put("/<send_id:uuid>/remove-password")
@authorized
async def remove_password(request: Request, send_id: uuid.UUID) -> HTTPResponse:
    caller = request.ctx.caller
    async with publish.write(request.app.ctx.pool, caller.device_identifier) as conn:
        return json(sends.send_json(await sends.remove_password(conn, send_id, caller.user_id)))


@bp.delete("/<send_id:uuid>")
@authorized
async def delete_send(request: Request, send_id: uuid.UUID) -> HTTPResponse:
    caller = request.ctx.caller
    async with publish.write(request.app.ctx.pool, caller.device_identifier) as conn:
        await sends.delete(conn, send_id, caller.user_id)
    return empty(status=200)


# ---- whoever has the link ------------------------------------------------------------------
# Two ways in, as the clients use them: the send_access grant of the token endpoint, which
# checks the password once and hands out a short-lived token for the one Send, spent on
# /api/sends/access and /api/sends/access/file/{fileId}; and the older routes that take the
# password with each request.

_SEND_INVALID = "send_id_invalid"


async def _check_password(request: Request, row, given: str | None, *, grant: bool) -> None:
    """The Send's password, when it has one: missing is 401 (the grant: password_hash_b64_required),
    wrong 400; attempts count against the login limits of the caller's address and the Send."""
    if not row["password_hash"]:
        return
    if not given:
        if grant:
            raise GrantError("Password required.", "invalid_request", send_access_error="password_hash_b64_required")
        raise Unauthorized("Password required.")
    account = f"send:{row['id']}"
    await limits.password_attempt(request, account)
    if not await verify_password(row["password_hash"], given):
        if grant:
            raise GrantError("Invalid password.", send_access_error="password_hash_b64_invalid")
        raise ApiError("Invalid password.", field="password")
    await limits.password_verified(request, account)


async def send_access_grant(request: Request, link_id: str, password_hash: str | None) -> HTTPResponse:
    """The token endpoint's send_access grant: a token for the Send the link names."""
    try:
        row = await sends.find_by_access_id(request.app.ctx.pool, link_id)
    except NotFound:
        raise GrantError("Invalid Send id.", send_access_error=_SEND_INVALID) from None
    await _check_password(request, row, password_hash, grant=True)
    issuer = request.app.ctx.send_issuer
    return json({"access_token": issuer.issue({"sub": str(row["id"])}), "expires_in": issuer.lifetime,
                 "token_type": "Bearer", "scope": "api.send.access"})


async def _by_token(request: Request):
    """The Send a send_access token was issued for, while it may still be accessed."""
    token = bearer_token(request.args, request.headers)
    try:
        claims = await request.app.ctx.send_verifier.verify(token or "")
    except TokenError:
        raise Unauthorized("Invalid or expired Send access token.") from None
    try:
        send_id = uuid.UUID(claims["sub"])
    except (ValueError, TypeError):
        raise Unauthorized("Invalid or expired Send access token.") from None
    return await sends.find_by_access_id(request.app.ctx.pool, sends.access_id(send_id))


async def _by_link(request: Request, link_id: str):
    row = await sends.find_by_access_id(request.app.ctx.pool, link_id)
    await _check_password(request, row, Body.of(request).str("password", max_length=sends.PASSWORD_LENGTH),
                          grant=False)
    return row


async def _access(request: Request, row) -> HTTPResponse:
    """A text Send counts an access here; a file Send when its file is fetched."""
    if row["type"] == sends.TEXT and not await sends.count_access(request.app.ctx.pool, row["id"]):
        raise NotFound("Send")
    return json(sends.access_json(row, None if row["hide_email"] else row["owner_email"]))


async def _file(request: Request, row, file_id: str) -> HTTPResponse:
    if row["file_id"] != file_id or not await sends.count_access(request.app.ctx.pool, row["id"]):
        raise NotFound("Send")
    return json({"id": file_id, "url": download_url(request, row["file_key"]), "object": "send-fileDownload"})


@bp.post("/access")
async def access_with_token(request: Request) -> HTTPResponse:
    return await _access(request, await _by_token(request))


@bp.post("/access/file/<file_id:str>")
async def file_with_token(request: Request, file_id: str) -> HTTPResponse:
    return await _file(request, await _by_token(request), file_id)


@bp.post("/access/<link_id:str>")
async def access(request: Request, link_id: str) -> HTTPResponse:
    return await _access(request, await _by_link(request, link_id))


@bp.post("/<link_id:str>/access/file/<file_id:str>")
async def access_file(request: Request, link_id: str, file_id: str) -> HTTPResponse:
    return await _file(request, await _by_link(request, link_id), file_id)
