"""Ciphers (vault items): create, read, update, soft delete, restore, delete, move, import.

Each handler parses, writes through the model and answers; the model says which event its
write publishes.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty, json

from vaultapi import publish
from vaultapi.auth import authorized
from vaultapi.body import Body
from vaultapi.errors import ApiError
from vaultapi.models import ciphers
from vaultapi.models.ciphers import CipherInput, VaultImport
from vaultapi.replies import send_json_with_items

__all__ = ["bp"]

bp = Blueprint("ciphers", url_prefix="/api/ciphers")


def _list_json(rows: list[asyncpg.Record], user_id: uuid.UUID) -> dict[str, Any]:
    return {"data": [ciphers.cipher_json(row, user_id) for row in rows], "object": "list", "continuationToken": None}


async def _create(request: Request, cipher: CipherInput) -> HTTPResponse:
    caller = request.ctx.caller
    async with publish.write(request.app.ctx.pool, caller.device_identifier) as conn:
        row = await ciphers.create(conn, caller.user_id, cipher, max_items=request.app.ctx.config.max_items_per_user)
    return json(ciphers.cipher_json(row, caller.user_id))


# ---- single items --------------------------------------------------------------------------

@bp.get("")
@authorized
async def list_ciphers(request: Request) -> None:
    async with request.app.ctx.pool.acquire() as conn, conn.transaction(readonly=True):
        items = await ciphers.encoded_by_user(conn, request.ctx.caller.user_id)
    await send_json_with_items(request, {"data": None, "object": "list", "continuationToken": None}, "data", items)


@bp.post("")
@authorized
async def create_cipher(request: Request) -> HTTPResponse:
    return await _create(request, CipherInput.parse(Body.of(request)))


@bp.post("/create")
@authorized
async def create_cipher_with_collections(request: Request) -> HTTPResponse:
    body = Body.of(request)
    if body.list("collectionIds"):
        raise ApiError("Collections are not supported by this server.", field="collectionIds")
    return await _create(request, CipherInput.parse(body.object("cipher", required=True)))


@bp.get("/<cipher_id:uuid>")
@bp.get("/<cipher_id:uuid>/details", name="get_cipher_details")
@authorized
async def get_cipher(request: Request, cipher_id: uuid.UUID) -> HTTPResponse:
    user_id = request.ctx.caller.user_id
    return json(ciphers.cipher_json(await ciphers.require(request.app.ctx.pool, cipher_id, user_id), user_id))


@bp.route("/<cipher_id:uuid>", methods=["PUT", "POST"])
@authorized
async def update_cipher(request: Request, cipher_id: uuid.UUID) -> HTTPResponse:
    cipher = CipherInput.parse(Body.of(request))
    caller = request.ctx.caller
    async with publish.write(request.app.ctx.pool, caller.device_identifier) as conn:
        row = await ciphers.update(conn, cipher_id, caller.user_id, cipher)
    return json(ciphers.cipher_json(row, caller.user_id))


@bp.route("/<cipher_id:uuid>/partial", methods=["PUT", "POST"])
@authorized
async def update_placement(request: Request, cipher_id: uuid.UUID) -> HTTPResponse:
    body = Body.of(request)
    folder_id, favorite = body.uuid("folderId"), body.bool("favorite")
    caller = request.ctx.caller
    async with publish.write(request.app.ctx.pool, caller.device_identifier) as conn:
        row = await ciphers.set_placement(conn, cipher_id, caller.user_id, folder_id, favorite)
    return json(ciphers.cipher_json(row, caller.user_id))


@bp.put("/<cipher_id:uuid>/delete")
@authorized
async def soft_delete_cipher(request: Request, cipher_id: uuid.UUID) -> HTTPResponse:
    await _set_deleted(request, [cipher_id], True)
    return empty(status=200)


@bp.put("/<cipher_id:uuid>/restore")
@authorized
async def restore_cipher(request: Request, cipher_id: uuid.UUID) -> HTTPResponse:
    [row] = await _set_deleted(request, [cipher_id], False)
    return json(ciphers.cipher_json(row, request.ctx.caller.user_id))


@bp.delete("/<cipher_id:uuid>")
@bp.post("/<cipher_id:uuid>/delete", name="delete_cipher_by_post")
@authorized
async def delete_cipher(request: Request, cipher_id: uuid.UUID) -> HTTPResponse:
    await _delete(request, [cipher_id])
    return empty(status=200)


# ---- many items: one statement, one event --------------------------------------------------

@bp.route("/move", methods=["PUT", "POST"])
@authorized
async def move_ciphers(request: Request) -> HTTPResponse:
    body = Body.of(request)
    ids, folder_id = body.uuid_list("ids"), body.uuid("folderId")
    caller = request.ctx.caller
    async with publish.write(request.app.ctx.pool, caller.device_identifier) as conn:
        await ciphers.move(conn, ids, caller.user_id, folder_id)
    return empty(status=200)


@bp.put("/delete")
@authorized
async def soft_delete_ciphers(request: Request) -> HTTPResponse:
    await _set_deleted(request, Body.of(request).uuid_list("ids"), True)
    return empty(status=200)


@bp.put("/restore")
@authorized
async def restore_ciphers(request: Request) -> HTTPResponse:
    rows = await _set_deleted(request, Body.of(request).uuid_list("ids"), False)
    return json(_list_json(rows, request.ctx.caller.user_id))


@bp.post("/delete")
@bp.delete("", name="delete_ciphers_by_delete")
@authorized
async def delete_ciphers(request: Request) -> HTTPResponse:
    await _delete(request, Body.of(request).uuid_list("ids"))
    return empty(status=200)


@bp.post("/import")
@authorized
async def import_ciphers(request: Request) -> HTTPResponse:
    # the one body of megabytes: read and checked in slices, so other requests keep their turns
    max_items = request.app.ctx.config.max_items_per_user
    vault = await VaultImport.parse(await Body.receive(request), max_items)
    caller = request.ctx.caller
    async with publish.write(request.app.ctx.pool, caller.device_identifier) as conn:
        await ciphers.import_vault(conn, caller.user_id, vault, max_items=max_items)
    return empty(status=200)


# one item or many go the same way: the statement decides between the item's event and a bulk one

async def _set_deleted(request: Request, ids: list[uuid.UUID], deleted: bool) -> list[asyncpg.Record]:
    caller = request.ctx.caller
    async with publish.write(request.app.ctx.pool, caller.device_identifier) as conn:
        return await ciphers.set_deleted(conn, ids, caller.user_id, deleted)


async def _delete(request: Request, ids: list[uuid.UUID]) -> None:
    caller = request.ctx.caller
    async with publish.write(request.app.ctx.pool, caller.device_identifier) as conn:
        await ciphers.delete(conn, ids, caller.user_id)
