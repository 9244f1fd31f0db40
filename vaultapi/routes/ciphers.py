"""Ciphers (vault items): create, read, update, soft delete, restore, delete, move, import.

Each write is one statement where it can be, so the triggers publish one event for it: one
item's change names the item, a bulk change of many items is one SyncCiphers.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty, json

from db.events import PushType
from vaultapi.auth import authorized
from vaultapi.body import Body
from vaultapi.database import encode_in_batches, write
from vaultapi.errors import ApiError
from vaultapi.models import ciphers, folders
from vaultapi.models.ciphers import CipherInput, ImportInput
from vaultapi.replies import send_json_with_items

__all__ = ["bp"]

bp = Blueprint("ciphers", url_prefix="/api/ciphers")


def _list_json(rows: list[asyncpg.Record], user_id: uuid.UUID) -> dict[str, Any]:
    return {"data": [ciphers.cipher_json(row, user_id) for row in rows], "object": "list", "continuationToken": None}


def _placement(cipher: CipherInput, user_id: uuid.UUID) -> tuple[dict[str, str], dict[str, bool]]:
    owner = str(user_id)
    placed = {owner: str(cipher.folder_id)} if cipher.folder_id else {}
    return placed, ({owner: True} if cipher.favorite else {})


async def _create(request: Request, cipher: CipherInput) -> HTTPResponse:
    caller = request.ctx.caller
    folder_map, favorites = _placement(cipher, caller.user_id)
    async with write(request.app.ctx.pool, caller.device_identifier) as conn:
        await ciphers.check_folder(conn, cipher.folder_id, caller.user_id)
        await ciphers.check_room(conn, caller.user_id, 1, request.app.ctx.config.max_items_per_user)
        row = await conn.fetchrow(
            """
            INSERT INTO ciphers (user_id, type, data, key, reprompt, folders, favorites)
            VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *
            """,
            caller.user_id, cipher.type, cipher.data, cipher.key, cipher.reprompt, folder_map, favorites)
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
    owner = str(caller.user_id)
    async with write(request.app.ctx.pool, caller.device_identifier) as conn:
        current = await ciphers.require(conn, cipher_id, caller.user_id, lock=True)
        cipher.check_not_stale(current)
        await ciphers.check_folder(conn, cipher.folder_id, caller.user_id)
        folder_map, favorites = _placement(cipher, caller.user_id)
        row = await conn.fetchrow(
            """
            UPDATE ciphers SET type = $2, data = $3, key = $4, reprompt = $5,
                               folders = (folders - $6::text) || $7, favorites = (favorites - $6::text) || $8
             WHERE id = $1 RETURNING *
            """,
            cipher_id, cipher.type, cipher.data, cipher.key, cipher.reprompt, owner, folder_map, favorites)
    return json(ciphers.cipher_json(row, caller.user_id))


@bp.route("/<cipher_id:uuid>/partial", methods=["PUT", "POST"])
@authorized
async def update_placement(request: Request, cipher_id: uuid.UUID) -> HTTPResponse:
    """Folder and favorite only: what a user changes without the item's key."""
    body = Body.of(request)
    folder_id = body.uuid("folderId")
    favorite = body.bool("favorite")
    caller = request.ctx.caller
    owner = str(caller.user_id)
    async with write(request.app.ctx.pool, caller.device_identifier) as conn:
        await ciphers.check_folder(conn, folder_id, caller.user_id)
        row = await conn.fetchrow(
            """
            UPDATE ciphers SET folders = (folders - $3::text) || $4, favorites = (favorites - $3::text) || $5
             WHERE id = $1 AND user_id = $2 RETURNING *
            """,
            cipher_id, caller.user_id, owner,
            {owner: str(folder_id)} if folder_id else {}, {owner: True} if favorite else {})
        if row is None:
            await ciphers.require(conn, cipher_id, caller.user_id)
    return json(ciphers.cipher_json(row, caller.user_id))


async def _set_deleted(request: Request, cipher_id: uuid.UUID, deleted: bool) -> asyncpg.Record:
    caller = request.ctx.caller
    async with write(request.app.ctx.pool, caller.device_identifier) as conn:
        row = await conn.fetchrow(
            f"UPDATE ciphers SET deleted_date = {'now()' if deleted else 'NULL'}"
            " WHERE id = $1 AND user_id = $2 RETURNING *",
            cipher_id, caller.user_id)
        if row is None:
            await ciphers.require(conn, cipher_id, caller.user_id)
    return row


@bp.put("/<cipher_id:uuid>/delete")
@authorized
async def soft_delete_cipher(request: Request, cipher_id: uuid.UUID) -> HTTPResponse:
    await _set_deleted(request, cipher_id, True)
    return empty(status=200)


@bp.put("/<cipher_id:uuid>/restore")
@authorized
async def restore_cipher(request: Request, cipher_id: uuid.UUID) -> HTTPResponse:
    row = await _set_deleted(request, cipher_id, False)
    return json(ciphers.cipher_json(row, request.ctx.caller.user_id))


@bp.delete("/<cipher_id:uuid>")
@bp.post("/<cipher_id:uuid>/delete", name="delete_cipher_by_post")
@authorized
async def delete_cipher(request: Request, cipher_id: uuid.UUID) -> HTTPResponse:
    caller = request.ctx.caller
    async with write(request.app.ctx.pool, caller.device_identifier) as conn:
        deleted = await conn.fetchval(
            "DELETE FROM ciphers WHERE id = $1 AND user_id = $2 RETURNING id", cipher_id, caller.user_id)
        if deleted is None:
            await ciphers.require(conn, cipher_id, caller.user_id)
    return empty(status=200)


# ---- many items: one statement, one event --------------------------------------------------

@bp.route("/move", methods=["PUT", "POST"])
@authorized
async def move_ciphers(request: Request) -> HTTPResponse:
    body = Body.of(request)
    ids = body.uuid_list("ids")
    folder_id = body.uuid("folderId")
    caller = request.ctx.caller
    owner = str(caller.user_id)
    async with write(request.app.ctx.pool, caller.device_identifier) as conn:
        await ciphers.check_folder(conn, folder_id, caller.user_id)
        await ciphers.require_all(conn, ids, caller.user_id)
        await conn.execute(
            "UPDATE ciphers SET folders = (folders - $3::text) || $4 WHERE id = ANY($1::uuid[]) AND user_id = $2",
            ids, caller.user_id, owner, {owner: str(folder_id)} if folder_id else {})
    return empty(status=200)


async def _bulk(request: Request, statement: str) -> list[asyncpg.Record]:
    ids = Body.of(request).uuid_list("ids")
    caller = request.ctx.caller
    async with write(request.app.ctx.pool, caller.device_identifier) as conn:
        await ciphers.require_all(conn, ids, caller.user_id)
        return await conn.fetch(statement, ids, caller.user_id)


@bp.put("/delete")
@authorized
async def soft_delete_ciphers(request: Request) -> HTTPResponse:
    await _bulk(request, "UPDATE ciphers SET deleted_date = now() WHERE id = ANY($1::uuid[]) AND user_id = $2")
    return empty(status=200)


@bp.put("/restore")
@authorized
async def restore_ciphers(request: Request) -> HTTPResponse:
    rows = await _bulk(
        request,
        "UPDATE ciphers SET deleted_date = NULL WHERE id = ANY($1::uuid[]) AND user_id = $2 RETURNING *")
    return json(_list_json(rows, request.ctx.caller.user_id))


@bp.post("/delete")
@bp.delete("", name="delete_ciphers_by_delete")
@authorized
async def delete_ciphers(request: Request) -> HTTPResponse:
    await _bulk(request, "DELETE FROM ciphers WHERE id = ANY($1::uuid[]) AND user_id = $2")
    return empty(status=200)


@bp.post("/import")
@authorized
async def import_ciphers(request: Request) -> HTTPResponse:
    """Folders and items in a few large statements, one SyncVault however many there are."""
    caller = request.ctx.caller
    owner = str(caller.user_id)
    max_items = request.app.ctx.config.max_items_per_user
    imported = await ImportInput.parse(await Body.receive(request), max_items)
    items, relations = imported.items, imported.relations

    async with write(request.app.ctx.pool, caller.device_identifier) as conn:
        # however few items come, the triggers publish one SyncVault, not an item's event
        await conn.execute("SELECT set_config('pgwarden.bulk', 'on', true)")
        # a folder sent with the id of one of the user's folders is that folder, not a copy
        existing = {str(row["id"]) for row in await folders.find_by_user(conn, caller.user_id, keep=True)}
        folder_ids: list[str] = []
        new_folders: list[dict[str, str]] = []
        for given, name in imported.folders:
            if given is not None and given.lower() in existing:
                folder_ids.append(given.lower())
                continue
            folder_id = str(uuid.uuid4())
            folder_ids.append(folder_id)
            new_folders.append({"id": folder_id, "name": name})
        for names in await encode_in_batches(new_folders):
            await conn.execute(
                "INSERT INTO folders (id, user_id, name)"
                " SELECT id, $1, name FROM jsonb_to_recordset($2::jsonb) AS f(id uuid, name text)",
                caller.user_id, names)
        await ciphers.check_room(conn, caller.user_id, len(items), max_items)
        batches = await encode_in_batches(
            {
                "type": item.type, "data": item.data, "key": item.key, "reprompt": item.reprompt,
                "folders": {owner: folder_ids[relations[index]]} if index in relations else {},
                "favorites": {owner: True} if item.favorite else {},
            }
            for index, item in enumerate(items)
        )
        # one statement per batch; the events of one transaction all carry its now(), so the
        # statements still publish one SyncVault
        for rows in batches:
            await conn.execute(
                """
                INSERT INTO ciphers (user_id, type, data, key, reprompt, folders, favorites)
                SELECT $1, type, data, key, reprompt, folders, favorites
                  FROM jsonb_to_recordset($2::jsonb)
                    AS c(type smallint, data jsonb, key text, reprompt smallint, folders jsonb, favorites jsonb)
                """,
                caller.user_id, rows)
        # the inserts publish this same SyncVault (identical notifications in one transaction
        # are delivered once); this row publishes it when the import was empty
        await conn.execute(
            "INSERT INTO sync_events (user_id, push_type) VALUES ($1, $2)", caller.user_id, PushType.SYNC_VAULT)
    return empty(status=200)
