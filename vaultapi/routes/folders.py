"""Folders: list, get, create, rename, delete (a deleted folder's items become folderless)."""

from __future__ import annotations

import uuid

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty, json

from vaultapi import limits
from vaultapi.auth import authorized
from vaultapi.body import Body
from vaultapi.database import write
from vaultapi.models import folders

__all__ = ["bp"]

bp = Blueprint("folders", url_prefix="/api/folders")


def _name(request: Request) -> str:
    return Body.of(request).enc_string("name", required=True, max_length=limits.FOLDER_NAME)


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
    async with write(request.app.ctx.pool, caller.device_identifier) as conn:
        row = await conn.fetchrow(
            "INSERT INTO folders (user_id, name) VALUES ($1, $2) RETURNING *", caller.user_id, name)
    return json(folders.folder_json(row))


@bp.route("/<folder_id:uuid>", methods=["PUT", "POST"])
@authorized
async def update_folder(request: Request, folder_id: uuid.UUID) -> HTTPResponse:
    name = _name(request)
    caller = request.ctx.caller
    async with write(request.app.ctx.pool, caller.device_identifier) as conn:
        row = await conn.fetchrow(
            "UPDATE folders SET name = $3 WHERE id = $1 AND user_id = $2 RETURNING *",
            folder_id, caller.user_id, name)
        if row is None:
            await folders.require(conn, folder_id, caller.user_id)
    return json(folders.folder_json(row))


@bp.delete("/<folder_id:uuid>")
@bp.post("/<folder_id:uuid>/delete", name="delete_folder_by_post")
@authorized
async def delete_folder(request: Request, folder_id: uuid.UUID) -> HTTPResponse:
    caller = request.ctx.caller
    async with write(request.app.ctx.pool, caller.device_identifier) as conn:
        deleted = await conn.fetchval(
            "DELETE FROM folders WHERE id = $1 AND user_id = $2 RETURNING id", folder_id, caller.user_id)
        if deleted is None:
            await folders.require(conn, folder_id, caller.user_id)
    return empty(status=200)
