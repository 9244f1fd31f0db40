"""An item's attachments: announce and upload (v2), the legacy one-step upload, a download URL,
delete.

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
from vaultapi.models import attachments, ciphers
from vaultapi.models.attachments import AttachmentInput
from vaultapi.storage import FileTooLarge
from vaultapi.uploads import StreamedForm, limit_body

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
    return json({
        "attachmentId": attachment_id,
        "url": f"{config.domain.rstrip('/')}/api/ciphers/{cipher_id}/attachment/{attachment_id}",
        "fileUploadType": DIRECT_UPLOAD,
        "cipherResponse": cipher,
        "cipherMiniResponse": {**cipher, "object": "cipherMini"},
        "object": "attachment-fileUpload",
    })


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
    caller, pool, config = request.ctx.caller, request.app.ctx.pool, request.app.ctx.config
    async with pool.acquire() as conn, conn.transaction():
        available = await attachments.room(conn, config, await attachments.editable(conn, cipher_id, caller.user_id))
    limit_body(request, config.max_file_size * 1024 + MULTIPART_OVERHEAD)
    form = StreamedForm(request)
    key = None
    while (part := await form.next_part()) is not None:
        if part.name == "key":
            key = await form.field()
            check_enc_string(key, "key", attachments.KEY_LENGTH)
        elif part.name == "data":
            break
    if part is None:
        raise ApiError("The form holds no file (data).")
    file_name = part.filename or ""
    check_enc_string(file_name, "fileName", attachments.NAME_LENGTH, required=True)
    attachment_id = attachments.new_id()
    stored = attachments.file_key(cipher_id, attachment_id)
    size = await store_upload(request, stored, form, available)
    try:
        await form.finish()
        async with publish.write(pool, caller.device_identifier) as conn:
            item = await attachments.add_uploaded(conn, config, cipher_id, caller.user_id, attachment_id, file_name,
                                                  key, size)
    except BaseException:
        await request.app.ctx.store.delete([stored])
        raise
    return json(ciphers.cipher_json(item, caller.user_id))


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
