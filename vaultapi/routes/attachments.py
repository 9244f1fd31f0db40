"""An item's attachments: announce and upload (v2) and renew its URL, the legacy one-step upload
(and the admin console's), an old attachment re-encrypted for an organization before its item is
shared, a download URL, delete.

Uploads are streamed routes: the body is read only after the caller's token and rights are
checked and its limit set, and goes to the file store in chunks (vaultapi/uploads.py). A file
that is refused, or whose upload breaks off, leaves nothing stored.
"""

from __future__ import annotations

import uuid

import asyncpg
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty, json

from vaultapi import publish
from vaultapi.auth import authorized
from vaultapi.body import Body, check_enc_string
from vaultapi.body_limits import MULTIPART_OVERHEAD
from vaultapi.downloads import download_url
from vaultapi.errors import ApiError, NotFound
from vaultapi.models import attachments, ciphers, memberships
from vaultapi.models.attachments import AttachmentInput
from vaultapi.storage import FileTooLarge
from vaultapi.uploads import FormPart, StreamedForm, limit_body

__all__ = ["bp", "store_upload"]

bp = Blueprint("attachments", url_prefix="/api/ciphers")

#: the clients' FileUploadType: Direct, an upload to the API itself
DIRECT_UPLOAD = 0


@bp.post("/<cipher_id:uuid>/attachment/v2")
@authorized
async def announce(request: Request, cipher_id: uuid.UUID) -> HTTPResponse:
    attachment = AttachmentInput.parse(Body.of(request))
    caller, config = request.ctx.caller, request.app.ctx.config
    async with publish.write(request.app.ctx.pool, caller.device_identifier) as conn:
        attachment_id, item = await attachments.announce(conn, config, cipher_id, caller.user_id, attachment)
    cipher = ciphers.cipher_json(item, caller.user_id)
    # the clients keep this copy of the item: it shows the file being uploaded
    announced = {"id": attachment_id, "file_name": attachment.file_name, "key": attachment.key,
                 "size": attachment.file_size}
    cipher["attachments"] = [*(cipher["attachments"] or []), attachments.attachment_json(announced)]
    return json(_upload_json(request, cipher_id, attachment_id, cipher))


@bp.get("/<cipher_id:uuid>/attachment/<attachment_id:str>/renew")
@authorized
async def renew(request: Request, cipher_id: uuid.UUID, attachment_id: str) -> HTTPResponse:
    """Where an announced file not yet uploaded goes, asked again (the clients' URL went stale)."""
    pool = request.app.ctx.pool
    await attachments.editable(pool, cipher_id, request.ctx.caller.user_id)
    row = await attachments.find(pool, cipher_id, attachment_id)
    if row is None or row["uploaded"]:
        raise NotFound("Attachment")
    return json(_upload_json(request, cipher_id, attachment_id, None))


def _upload_json(request: Request, cipher_id: uuid.UUID, attachment_id: str, cipher: dict | None) -> dict:
    """AttachmentUploadDataResponseModel: the upload goes to the API itself."""
    return {
        "attachmentId": attachment_id,
        "url": f"{request.app.ctx.config.domain.rstrip('/')}/api/ciphers/{cipher_id}/attachment/{attachment_id}",
        "fileUploadType": DIRECT_UPLOAD,
        "cipherResponse": cipher,
        "cipherMiniResponse": {**cipher, "object": "cipherMini"} if cipher is not None else None,
        "object": "attachment-fileUpload",
    }


@bp.post("/<cipher_id:uuid>/attachment/<attachment_id:str>", stream=True)
@authorized
async def upload(request: Request, cipher_id: uuid.UUID, attachment_id: str) -> HTTPResponse:
    """The announced file: exactly the size announced."""
    caller, pool = request.ctx.caller, request.app.ctx.pool
    await attachments.editable(pool, cipher_id, caller.user_id)
    row = await attachments.find(pool, cipher_id, attachment_id)
    if row is None or row["uploaded"]:
        raise NotFound("Attachment")
    limit_body(request, row["size"] + MULTIPART_OVERHEAD)
    form = StreamedForm(request)
    key = row["file_key"]
    while (part := await form.next_part()) is not None and part.name != "data":
        pass
    if part is None:
        raise ApiError("The form holds no file (data).")
    size = await store_upload(request, key, form, row["size"])
    try:
        await form.finish()
        if size != row["size"]:
            raise ApiError("The file is not the size announced.")
        async with publish.write(pool, caller.device_identifier) as conn:
            await attachments.mark_uploaded(conn, cipher_id, caller.user_id, attachment_id, size)
    except BaseException:
        # refused, or the item or the attachment went meanwhile: the file goes too
        await request.app.ctx.store.delete([key])
        raise
    return empty(status=200)


@bp.post("/<cipher_id:uuid>/attachment", stream=True)
@authorized
async def upload_legacy(request: Request, cipher_id: uuid.UUID) -> HTTPResponse:
    """The older one-step upload: the attachment's key, then the file, in one form."""
    item = await _upload_one_step(request, cipher_id)
    return json(ciphers.cipher_json(item, request.ctx.caller.user_id))


@bp.post("/<cipher_id:uuid>/attachment-admin", stream=True)
@authorized
async def upload_legacy_admin(request: Request, cipher_id: uuid.UUID) -> HTTPResponse:
    """The admin console's one-step upload: an organization's item, for a member who may edit
    any of its collections; any other caller finds no such item."""
    caller, pool = request.ctx.caller, request.app.ctx.pool
    organization_id = (await ciphers.require(pool, cipher_id, caller.user_id)).row["organization_id"]
    if organization_id is None:
        raise NotFound("Cipher")
    try:
        await memberships.require_member(pool, organization_id, caller.user_id, lambda m: m.can_edit_any_collection)
    except NotFound:
        raise NotFound("Cipher") from None
    item = await _upload_one_step(request, cipher_id)
    return json({**ciphers.cipher_json(item, caller.user_id), "object": "cipherMini"})


async def _upload_one_step(request: Request, cipher_id: uuid.UUID) -> ciphers.Visible:
    caller, pool, config = request.ctx.caller, request.app.ctx.pool, request.app.ctx.config
    async with pool.acquire() as conn, conn.transaction():
        available = await attachments.room(conn, config, await attachments.editable(conn, cipher_id, caller.user_id))
    limit_body(request, config.max_file_size * 1024 + MULTIPART_OVERHEAD)
    form = StreamedForm(request)
    key, part = await _key_then_file(form)
    attachment_id = attachments.new_id()
    stored = attachments.file_key(cipher_id, attachment_id)
    size = await store_upload(request, stored, form, available)
    try:
        await form.finish()
        async with publish.write(pool, caller.device_identifier) as conn:
            return await attachments.add_uploaded(conn, config, cipher_id, caller.user_id, attachment_id,
                                                  part.filename or "", key, size)
    except BaseException:
        await request.app.ctx.store.delete([stored])
        raise


@bp.post("/<cipher_id:uuid>/attachment/<attachment_id:str>/share", stream=True)
@authorized
async def upload_for_share(request: Request, cipher_id: uuid.UUID, attachment_id: str) -> HTTPResponse:
    """An old attachment (no key of its own) of the caller's own item, re-encrypted by the client
    for the organization (?organizationId) the item is about to be shared to: held until the
    share swaps it in (vaultapi/models/attachment_shares.py); the item does not change yet."""
    caller, pool, config = request.ctx.caller, request.app.ctx.pool, request.app.ctx.config
    try:
        organization_id = uuid.UUID(request.args.get("organizationId", ""))
    except ValueError:
        raise ApiError("organizationId must be an organization's id.", field="organizationId") from None
    async with pool.acquire() as conn, conn.transaction():
        await attachments.shareable(conn, cipher_id, caller.user_id, attachment_id, organization_id)
        available = await attachments.organization_room(conn, config, organization_id)
    limit_body(request, config.max_file_size * 1024 + MULTIPART_OVERHEAD)
    form = StreamedForm(request)
    key, part = await _key_then_file(form)
    if key is None:
        raise ApiError("The attachment's new key is required (key).", field="key")
    stored = attachments.file_key(cipher_id, attachments.new_id())
    size = await store_upload(request, stored, form, available)
    try:
        await form.finish()
        async with pool.acquire() as conn, conn.transaction():
            await attachments.hold_share(conn, config, cipher_id, caller.user_id, attachment_id, organization_id,
                                         part.filename or "", key, size, stored)
    except BaseException:
        await request.app.ctx.store.delete([stored])
        raise
    return empty(status=200)


async def _key_then_file(form: StreamedForm) -> tuple[str | None, FormPart]:
    """A one-step form: the attachment's key (optional), then its file (data), whose file name is
    the encrypted name; the form is left at the file's bytes."""
    key = None
    while (part := await form.next_part()) is not None:
        if part.name == "key":
            key = await form.field()
            check_enc_string(key, "key", attachments.KEY_LENGTH)
        elif part.name == "data":
            check_enc_string(part.filename or "", "fileName", attachments.NAME_LENGTH, required=True)
            return key, part
    raise ApiError("The form holds no file (data).")


@bp.get("/<cipher_id:uuid>/attachment/<attachment_id:str>")
@authorized
async def get_attachment(request: Request, cipher_id: uuid.UUID, attachment_id: str) -> HTTPResponse:
    """The attachment with a fresh download URL."""
    pool = request.app.ctx.pool
    await ciphers.require(pool, cipher_id, request.ctx.caller.user_id)
    row = await attachments.find(pool, cipher_id, attachment_id)
    if row is None or not row["uploaded"]:
        raise NotFound("Attachment")
    return json(attachments.attachment_json(row, download_url(request, row["file_key"])))


@bp.delete("/<cipher_id:uuid>/attachment/<attachment_id:str>")
@bp.post("/<cipher_id:uuid>/attachment/<attachment_id:str>/delete", name="delete_attachment_by_post")
# the admin console's: the same rights, since an admin reaches the organization's items through cipher_access
@bp.delete("/<cipher_id:uuid>/attachment/<attachment_id:str>/admin", name="delete_attachment_admin")
@bp.post("/<cipher_id:uuid>/attachment/<attachment_id:str>/delete-admin", name="delete_attachment_admin_by_post")
@authorized
async def delete_attachment(request: Request, cipher_id: uuid.UUID, attachment_id: str) -> HTTPResponse:
    caller = request.ctx.caller
    async with publish.write(request.app.ctx.pool, caller.device_identifier) as conn:
        item = await attachments.remove(conn, cipher_id, caller.user_id, attachment_id)
    # the clients take the item's new revision date from it
    return json({"cipher": ciphers.cipher_json(item, caller.user_id), "object": "deleteAttachmentResponse"})


async def store_upload(request: Request, key: str, form: StreamedForm, max_size: int) -> int:
    """The current part of the form into the store under key; refused past max_size, nothing kept."""
    try:
        return await request.app.ctx.store.put(key, form.data(), max_size)
    except FileTooLarge:
        raise ApiError("The file is larger than allowed.", status=413) from None
    except (FileExistsError, asyncpg.UniqueViolationError):
        raise ApiError("This file is being uploaded already.") from None
