"""Folders: list, get, create, rename, delete (a deleted folder's items become folderless)."""

from __future__ import annotations

import uuid

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty, json

from vaultapi import body_limits, publish
from vaultapi.auth import authorized
from vaultapi.body import Body
from vaultapi.models import folders

__all__ = ["bp"]

bp = Blueprint("folders", url_prefix="/api/folders")


def _name(request: Request) -> str:
    return Body.of(request).enc_string("name", required=True, max_length=body_limits.FOLDER_NAME)


@bp.get("")
@authorized
async def list_folders(request: Request) -> HTTPResponse:
    rows = await folders.find_by_user(request.app.ctx.pool, request.ctx.caller.user_id)
    return json({"data": [folders.folder_json(row) for row in rows], "object": "list", "continuationToken": None})


@bp.get("/<folder_id:uuid>")
@authorized
async def get_folder(request: Request, folder_id: uuid.UUID) -> HTTPResponse:
    return json(folders.folder_json(await folders.require(request.app.ctx.pool, folder_id, request.ctx.caller.user_id)))


@bp.post("")
@authorized
async def create_folder(request: Request) -> HTTPResponse:
    name = _name(request)
    caller = request.ctx.caller
    async with publish.write(request.app.ctx.pool, caller.device_identifier) as conn:
        row = await folders.create(conn, caller.user_id, name)
    return json(folders.folder_json(row))


@bp.route("/<folder_id:uuid>", methods=["PUT", "POST"])
@authorized
async def update_folder(request: Request, folder_id: uuid.UUID) -> HTTPResponse:
    name = _name(request)
    caller = request.ctx.caller
    async with publish.write(request.app.ctx.pool, caller.device_identifier) as conn:
        row = await folders.rename(conn, folder_id, caller.user_id, name)
    return json(folders.folder_json(row))


@bp.delete("/<folder_id:uuid>")
@bp.post("/<folder_id:uuid>/delete", name="delete_folder_by_post")
@authorized
async def delete_folder(request: Request, folder_id: uuid.UUID) -> HTTPResponse:
    caller = request.ctx.caller
    async with publish.write(request.app.ctx.pool, caller.device_identifier) as conn:
        await folders.delete(conn, folder_id, caller.user_id)
    return empty(status=200)
