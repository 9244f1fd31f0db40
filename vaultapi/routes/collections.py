"""Collections: the user's own list, and an organization's collections with who holds them.

Who may do what (organizations.COLLECTION_MANAGEMENT is fixed):

- see every collection of the organization: Owners, Admins, Custom members who may edit or
  delete any collection; others see the collections they hold;
- see and change who holds a collection, rename it: those who may edit any collection, and
  the members who manage it;
- create one: Owners, Admins, Custom members with createNewCollections (a creator without full
  access manages what it creates);
- delete one: Owners, Admins, Custom members with deleteAnyCollection.

A collection the caller may not see, or may not act on as asked, is a 404, like a missing one.
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
from vaultapi.errors import ApiError, NotFound
from vaultapi.models import collections, memberships
from vaultapi.models.collections import Grant
from vaultapi.models.memberships import Member

__all__ = ["bp"]

bp = Blueprint("collections", url_prefix="/api")

COLLECTIONS = "/organizations/<organization_id:uuid>/collections"
ONE_COLLECTION = COLLECTIONS + "/<collection_id:uuid>"


def _body(request: Request) -> Body:
    return Body.of(request)


def _list(data: list[Any]) -> dict[str, Any]:
    return {"data": data, "object": "list", "continuationToken": None}


async def _managed(conn: asyncpg.Connection, actor: Member) -> set[uuid.UUID]:
    """The collections whose members and name the actor may change."""
    if actor.can_edit_any_collection:
        return {row["id"] for row in await collections.of_organization(conn, actor.organization_id)}
    return {row["id"] for row in await collections.visible_to(conn, actor.user_id, actor.organization_id)
            if row["manage"]}


async def _require_managed(conn: asyncpg.Connection, actor: Member, ids: list[uuid.UUID]) -> list[asyncpg.Record]:
    rows = await collections.find_many(conn, actor.organization_id, ids)
    if len(rows) != len(set(ids)) or not set(ids) <= await _managed(conn, actor):
        raise NotFound("Collection")
    return rows


async def _access_details(conn: asyncpg.Connection, actor: Member, rows: list[asyncpg.Record]) -> list[dict[str, Any]]:
    grants = await collections.members_of(conn, [row["id"] for row in rows])
    return [collections.access_details_json(row, grants[row["id"]], actor) for row in rows]


# ---- reading -------------------------------------------------------------------------------

@bp.get("/collections")
@authorized
async def my_collections(request: Request) -> HTTPResponse:
    """The caller's collections in every organization, with its rights (as in sync)."""
    rows = await collections.visible_to(request.app.ctx.pool, request.ctx.caller.user_id)
    return json(_list([collections.details_json(row) for row in rows]))


@bp.get(COLLECTIONS)
@authorized
async def list_collections(request: Request, organization_id: uuid.UUID) -> HTTPResponse:
    user_id = request.ctx.caller.user_id
    async with request.app.ctx.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        actor = await memberships.require_member(conn, organization_id, user_id)
        rows = (await collections.of_organization(conn, organization_id) if actor.can_view_all_collections
                else await collections.visible_to(conn, user_id, organization_id))
    return json(_list([collections.collection_json(row) for row in rows]))


@bp.get(COLLECTIONS + "/details")
@authorized
async def list_collection_details(request: Request, organization_id: uuid.UUID) -> HTTPResponse:
    """The collections the caller may manage, with who holds them (the admin console's list)."""
    async with request.app.ctx.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        actor = await memberships.require_member(conn, organization_id, request.ctx.caller.user_id)
        managed = await _managed(conn, actor)
        rows = [row for row in await collections.of_organization(conn, organization_id)
                if row["id"] in managed or actor.can_view_all_collections or actor.can_manage_users]
        details = await _access_details(conn, actor, rows)
    return json(_list(details))


@bp.get(ONE_COLLECTION)
@authorized
async def get_collection(request: Request, organization_id: uuid.UUID, collection_id: uuid.UUID) -> HTTPResponse:
    user_id = request.ctx.caller.user_id
    async with request.app.ctx.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        actor = await memberships.require_member(conn, organization_id, user_id)
        if actor.can_view_all_collections:
            row = await collections.require(conn, organization_id, collection_id)
        else:
            row = next((row for row in await collections.visible_to(conn, user_id, organization_id)
                        if row["id"] == collection_id), None)
            if row is None:
                raise NotFound("Collection")
    return json(collections.collection_json(row))


@bp.get(ONE_COLLECTION + "/details")
@authorized
async def get_collection_details(request: Request, organization_id: uuid.UUID,
                                 collection_id: uuid.UUID) -> HTTPResponse:
    return json(await _managed_details(request, organization_id, collection_id))


@bp.get(ONE_COLLECTION + "/users")
@authorized
async def get_collection_users(request: Request, organization_id: uuid.UUID,
                               collection_id: uuid.UUID) -> HTTPResponse:
    """Who holds the collection: a bare list, as the Bitwarden server answers it."""
    return json((await _managed_details(request, organization_id, collection_id))["users"])


async def _managed_details(request: Request, organization_id: uuid.UUID, collection_id: uuid.UUID) -> dict[str, Any]:
    """One collection the caller manages, with who holds it."""
    async with request.app.ctx.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        actor = await memberships.require_member(conn, organization_id, request.ctx.caller.user_id)
        [details] = await _access_details(conn, actor, await _require_managed(conn, actor, [collection_id]))
    return details


# ---- writing -------------------------------------------------------------------------------

@bp.post(COLLECTIONS)
@authorized
async def create_collection(request: Request, organization_id: uuid.UUID) -> HTTPResponse:
    body = _body(request)
    name, external_id = collections.parse_fields(body, required=True)
    grants = Grant.parse_list(body, "users") or []
    caller = request.ctx.caller
    async with publish.write(request.app.ctx.pool, caller.device_identifier) as conn:
        actor = await memberships.require_member(conn, organization_id, caller.user_id,
                                                 lambda member: member.can_create_collections)
        if not actor.has_full_access and actor.id not in {grant.id for grant in grants}:
            # a creator without full access would not see what it made
            grants.append(Grant(actor.id, read_only=False, hide_passwords=False, manage=True))
        collection = await collections.create(conn, organization_id, name, external_id)
        await collections.set_members(conn, collection, grants)
        [details] = await _access_details(conn, actor, [collection])
    return json(details)


@bp.route(ONE_COLLECTION, methods=["PUT", "POST"])
@authorized
async def update_collection(request: Request, organization_id: uuid.UUID, collection_id: uuid.UUID) -> HTTPResponse:
    """A new name (none: kept) and external id; users null leaves the members as they are, a
    list (even empty) replaces them."""
    body = _body(request)
    name, external_id = collections.parse_fields(body, required=False)
    grants = Grant.parse_list(body, "users")
    caller = request.ctx.caller
    async with publish.write(request.app.ctx.pool, caller.device_identifier) as conn:
        actor = await memberships.require_member(conn, organization_id, caller.user_id)
        [collection] = await _require_managed(conn, actor, [collection_id])
        collection = await collections.rename(conn, collection, name, external_id)
        if grants is not None:
            await collections.set_members(conn, collection, grants)
        [details] = await _access_details(conn, actor, [collection])
    return json(details)


@bp.post(COLLECTIONS + "/bulk-access")
@authorized
async def bulk_access(request: Request, organization_id: uuid.UUID) -> HTTPResponse:
    """These members get each of these collections (groups: pgwarden has none)."""
    body = _body(request)
    collection_ids = body.uuid_list("collectionIds")
    grants = Grant.parse_list(body, "users") or []
    if not collection_ids:
        raise ApiError("No collections given.", field="collectionIds")
    caller = request.ctx.caller
    async with publish.write(request.app.ctx.pool, caller.device_identifier) as conn:
        actor = await memberships.require_member(conn, organization_id, caller.user_id)
        await _require_managed(conn, actor, collection_ids)
        await collections.add_members(conn, organization_id, collection_ids, grants)
    return empty(status=200)


@bp.delete(ONE_COLLECTION)
@bp.post(ONE_COLLECTION + "/delete", name="delete_collection_by_post")
@authorized
async def delete_collection(request: Request, organization_id: uuid.UUID, collection_id: uuid.UUID) -> HTTPResponse:
    await _delete(request, organization_id, [collection_id])
    return empty(status=200)


@bp.delete(COLLECTIONS)
@bp.post(COLLECTIONS + "/delete", name="delete_collections_by_post")
@authorized
async def delete_collections(request: Request, organization_id: uuid.UUID) -> HTTPResponse:
    await _delete(request, organization_id, _body(request).uuid_list("ids"))
    return empty(status=200)


async def _delete(request: Request, organization_id: uuid.UUID, ids: list[uuid.UUID]) -> None:
    if not ids:
        raise ApiError("No ids given.", field="ids")
    caller = request.ctx.caller
    async with publish.write(request.app.ctx.pool, caller.device_identifier) as conn:
        await memberships.require_member(conn, organization_id, caller.user_id,
                                         lambda member: member.can_delete_any_collection)
        await collections.delete(conn, organization_id, ids)
