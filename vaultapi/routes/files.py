"""The download URLs the API hands out (vaultapi/downloads.py): the path names the file, the
token proves the URL was signed for it, no access token is needed."""

from __future__ import annotations

import uuid

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from vaultapi.downloads import send_file
from vaultapi.models import attachments, sends

__all__ = ["bp"]

bp = Blueprint("files")


@bp.get("/attachments/<cipher_id:uuid>/<attachment_id:str>")
async def attachment_file(request: Request, cipher_id: uuid.UUID, attachment_id: str) -> HTTPResponse | None:
    return await send_file(request, attachments.file_key(cipher_id, attachment_id))



@bp.get("/sends/<send_id:uuid>/<file_id:str>")
async def send_file_download(request: Request, send_id: uuid.UUID, file_id: str) -> HTTPResponse | None:
    return await send_file(request, sends.file_key(send_id, file_id))
