"""Ciphers (vault items): create, read, update, soft delete, restore, delete, move, import; and
an organization's items: share into it, its collections, its import, its admin listing.

Each handler parses, writes through the model and answers; the model says which event its
write publishes and checks what the caller may do with the item.
"""

from __future__ import annotations

import uuid
from typing import Any

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty, json

from vaultapi import import_worker, publish
from vaultapi.auth import authorized, check_master_password
from vaultapi.body import Body, parse_uuid
from vaultapi.dates import iso
from vaultapi.errors import ApiError, NotFound
from vaultapi.limits import paced_import
from vaultapi.models import ciphers, memberships, users
from vaultapi.models.ciphers import CipherInput, Visible
from vaultapi.replies import send_json_with_items

__all__ = ["bp"]

bp = Blueprint("ciphers", url_prefix="/api/ciphers")


def _list_json(items: list[Visible], user_id: uuid.UUID) -> dict[str, Any]:
    return {"data": [ciphers.cipher_json(item, user_id) for item in items], "object": "list",
            "continuationToken": None}


def _collection_ids(body: Body) -> list[uuid.UUID]:
    return [parse_uuid(value, "collectionIds") for value in body.list("collectionIds") or []]


async def _create(request: Request, cipher: CipherInput, collection_ids: list[uuid.UUID]) -> HTTPResponse:
    caller = request.ctx.caller
    async with publish.write(request.app.ctx.pool, caller.device_identifier) as conn:
        item = await ciphers.create(conn, caller.user_id, cipher, collection_ids,
                                    max_items=request.app.ctx.config.max_items_per_user)
    return json(ciphers.cipher_json(item, caller.user_id))


def _organization_id(request: Request) -> uuid.UUID:
    # a query parameter the router does not check: an invalid one names no organization
    try:
        return uuid.UUID(request.args.get("organizationId", ""))
    except ValueError:
        raise NotFound("Organization") from None


# ---- single items --------------------------------------------------------------------------

@bp.get("")
@authorized
async def list_ciphers(request: Request) -> None:
    # one snapshot: the rights and the rows are two reads
    async with request.app.ctx.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        items = await ciphers.encoded_for_user(conn, request.ctx.caller.user_id)
    await send_json_with_items(request, {"data": None, "object": "list", "continuationToken": None}, "data", items)


@bp.post("")
@authorized
async def create_cipher(request: Request) -> HTTPResponse:
    return await _create(request, CipherInput.parse(Body.of(request)), [])


@bp.post("/create")
@authorized
async def create_cipher_with_collections(request: Request) -> HTTPResponse:
    body = Body.of(request)
    return await _create(request, CipherInput.parse(body.object("cipher", required=True)), _collection_ids(body))


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
        item = await ciphers.update(conn, cipher_id, caller.user_id, cipher)
    return json(ciphers.cipher_json(item, caller.user_id))


@bp.route("/<cipher_id:uuid>/partial", methods=["PUT", "POST"])
@authorized
async def update_placement(request: Request, cipher_id: uuid.UUID) -> HTTPResponse:
    body = Body.of(request)
    folder_id, favorite = body.uuid("folderId"), body.bool("favorite")
    caller = request.ctx.caller
    async with publish.write(request.app.ctx.pool, caller.device_identifier) as conn:
        item = await ciphers.set_placement(conn, cipher_id, caller.user_id, folder_id, favorite)
    return json(ciphers.cipher_json(item, caller.user_id))


@bp.put("/<cipher_id:uuid>/delete")
@authorized
async def soft_delete_cipher(request: Request, cipher_id: uuid.UUID) -> HTTPResponse:
    await _set_deleted(request, [cipher_id], True)
    return empty(status=200)


@bp.put("/<cipher_id:uuid>/restore")
@authorized
async def restore_cipher(request: Request, cipher_id: uuid.UUID) -> HTTPResponse:
    [item] = await _set_deleted(request, [cipher_id], False)
    return json(ciphers.cipher_json(item, request.ctx.caller.user_id))


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
    items = await _set_deleted(request, Body.of(request).uuid_list("ids"), False)
    return json(_list_json(items, request.ctx.caller.user_id))


@bp.post("/delete")
@bp.delete("", name="delete_ciphers_by_delete")
@authorized
async def delete_ciphers(request: Request) -> HTTPResponse:
    await _delete(request, Body.of(request).uuid_list("ids"))
    return empty(status=200)


@bp.post("/purge")
@authorized
async def purge(request: Request) -> HTTPResponse:
    """After the master password: every personal item and folder for good or, with
    ?organizationId=, every item of an organization the caller may edit entirely."""
    organization_id = _organization_id(request) if "organizationId" in request.args else None
    await check_master_password(request, Body.of(request))
    caller = request.ctx.caller
    async with publish.write(request.app.ctx.pool, caller.device_identifier) as conn:
        if organization_id is None:
            await users.purge_vault(conn, caller.user_id)
        else:
            member = await memberships.require_member(conn, organization_id, caller.user_id,
                                                      lambda m: m.can_edit_any_collection)
            await ciphers.purge_organization(conn, member.organization_id)
    return empty(status=200)


@bp.post("/import")
@authorized
@paced_import
async def import_ciphers(request: Request) -> HTTPResponse:
    # the one body of megabytes: read and checked in a process of its own (vaultapi.import_worker)
    max_items = request.app.ctx.config.max_items_per_user
    caller = request.ctx.caller
    folders_sent, count, batches = await import_worker.prepare("vault", await _import_body(request),
                                                               max_items=max_items)
    async with publish.write(request.app.ctx.pool, caller.device_identifier) as conn:
        await ciphers.import_vault(conn, caller.user_id, folders_sent, count, batches, max_items=max_items)
    return empty(status=200)


async def _import_body(request: Request) -> bytes:
    await request.receive_body()
    return request.body or b"null"


# one item or many go the same way: the statement decides between the item's event and a bulk one

async def _set_deleted(request: Request, ids: list[uuid.UUID], deleted: bool) -> list[Visible]:
    caller = request.ctx.caller
    async with publish.write(request.app.ctx.pool, caller.device_identifier) as conn:
        return await ciphers.set_deleted(conn, ids, caller.user_id, deleted)


async def _delete(request: Request, ids: list[uuid.UUID]) -> None:
    caller = request.ctx.caller
    async with publish.write(request.app.ctx.pool, caller.device_identifier) as conn:
        await ciphers.delete(conn, ids, caller.user_id)


# ---- organization items --------------------------------------------------------------------

@bp.route("/<cipher_id:uuid>/share", methods=["PUT", "POST"])
@authorized
async def share_cipher(request: Request, cipher_id: uuid.UUID) -> HTTPResponse:
    body = Body.of(request)
    cipher, collection_ids = CipherInput.parse(body.object("cipher", required=True)), _collection_ids(body)
    caller = request.ctx.caller
    async with publish.write(request.app.ctx.pool, caller.device_identifier) as conn:
        item = await ciphers.share(conn, cipher_id, caller.user_id, cipher, collection_ids,
                                   max_items=request.app.ctx.config.max_items_per_user)
    return json(ciphers.cipher_json(item, caller.user_id))


@bp.route("/share", methods=["PUT", "POST"])
@authorized
async def share_ciphers(request: Request) -> HTTPResponse:
    # a large body (body_limits.IMPORT_BODY), read and checked in slices as the import's
    body = await Body.receive(request)
    max_items = request.app.ctx.config.max_items_per_user
    raw = body.list("ciphers", required=True) or []
    parsed = await CipherInput.parse_many(raw, "ciphers", max_items)
    # each entry is an object: parse_many checked it
    items = {Body(entry).uuid("id", required=True): cipher for entry, cipher in zip(raw, parsed)}
    collection_ids = _collection_ids(body)
    caller = request.ctx.caller
    if body.uuid("encryptedFor") not in (None, caller.user_id):
        raise ApiError("Cipher was not encrypted for the current user. Please try again.", field="encryptedFor")
    async with publish.write(request.app.ctx.pool, caller.device_identifier) as conn:
        shared = await ciphers.share_many(conn, caller.user_id, items, collection_ids, max_items=max_items)
    # the clients read only the id and the new revision date of each
    return json({"data": [{"id": str(row["id"]), "revisionDate": iso(row["revision_date"]), "object": "cipherMini"}
                          for row in shared], "object": "list", "continuationToken": None})


@bp.route("/<cipher_id:uuid>/collections_v2", methods=["PUT", "POST"])
@authorized
async def set_collections(request: Request, cipher_id: uuid.UUID) -> HTTPResponse:
    item = await _set_collections(request, cipher_id)
    return json({"unavailable": item is None,
                 "cipher": ciphers.cipher_json(item, request.ctx.caller.user_id) if item else None,
                 "object": "optionalCipherDetails"})


@bp.route("/<cipher_id:uuid>/collections", methods=["PUT", "POST"])
@authorized
async def set_collections_v1(request: Request, cipher_id: uuid.UUID) -> HTTPResponse:
    """The collections endpoint of older clients, which answers the item itself."""
    item = await _set_collections(request, cipher_id)
    if item is None:
        raise NotFound("Cipher")
    return json(ciphers.cipher_json(item, request.ctx.caller.user_id))


async def _set_collections(request: Request, cipher_id: uuid.UUID) -> Visible | None:
    collection_ids = _collection_ids(Body.of(request))
    caller = request.ctx.caller
    async with publish.write(request.app.ctx.pool, caller.device_identifier) as conn:
        return await ciphers.set_collections(conn, cipher_id, caller.user_id, collection_ids)


@bp.post("/import-organization")
@authorized
@paced_import
async def import_into_organization(request: Request) -> HTTPResponse:
    organization_id = _organization_id(request)
    # the personal import's way
    max_items = request.app.ctx.config.max_items_per_user
    caller = request.ctx.caller
    collections_sent, count, batches = await import_worker.prepare(
        "organization", await _import_body(request), max_items=max_items, organization_id=str(organization_id))
    async with publish.write(request.app.ctx.pool, caller.device_identifier) as conn:
        member = await memberships.require_member(conn, organization_id, caller.user_id)
        if not member.can_import:
            raise ApiError("Not enough privileges to import into this organization.")
        await ciphers.import_organization(conn, member, collections_sent, count, batches, max_items=max_items)
    return empty(status=200)


@bp.get("/organization-details/assigned")
@authorized
async def assigned_organization_items(request: Request) -> HTTPResponse:
    """The organization's items the caller reaches as a member (through its collections, or all
    of them with full access), as the admin console lists a member's own share of them."""
    organization_id = _organization_id(request)
    user_id = request.ctx.caller.user_id
    async with request.app.ctx.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        await memberships.require_member(conn, organization_id, user_id)
        items = await ciphers.visible_in_organization(conn, user_id, organization_id)
    return json({"data": [ciphers.cipher_json(item, user_id) for item in items], "object": "list",
                 "continuationToken": None})


@bp.get("/organization-details")
@authorized
async def organization_items(request: Request) -> HTTPResponse:
    """Every item of the organization, for the members who reach them all (its admin console)."""
    organization_id = _organization_id(request)
    async with request.app.ctx.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        await memberships.require_member(conn, organization_id, request.ctx.caller.user_id,
                                         lambda member: member.has_full_access)
        rows = await ciphers.of_organization(conn, organization_id)
    return json({"data": [ciphers.mini_details_json(row) for row in rows], "object": "list",
                 "continuationToken": None})
