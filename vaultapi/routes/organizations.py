"""Organizations: create, read, rename, delete, their key pair, leaving one, and the empty lists
of the features pgwarden does not have (groups, policies).

Anyone with an account may create an organization and becomes its Owner. An organization the
caller is not a confirmed member of is a 404, like a missing one; so is an action the caller's
role does not allow.
"""

from __future__ import annotations

import uuid
from typing import Any

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty, json

from vaultapi import publish
from vaultapi.auth import authorized, check_master_password
from vaultapi.body import Body
from vaultapi.errors import NotFound
from vaultapi.models import collections, memberships, organizations
from vaultapi.models.memberships import Member, MemberStatus, MemberType

__all__ = ["bp"]

bp = Blueprint("organizations", url_prefix="/api/organizations")

#: Bitwarden's limit of an organization's name
MAX_NAME_LENGTH = 50
MAX_KEY_LENGTH = 10_000


def _body(request: Request) -> Body:
    return Body.of(request)


def _keys(body: Body, *, required: bool) -> tuple[str, str] | None:
    keys = body.object("keys", required=required)
    if keys is None:
        return None
    return (keys.str("publicKey", required=True, max_length=MAX_KEY_LENGTH),
            keys.str("encryptedPrivateKey", required=True, max_length=MAX_KEY_LENGTH))


def _keys_json(row: Any) -> dict[str, Any]:
    return {"publicKey": row["public_key"], "privateKey": row["private_key"], "object": "organizationKeys"}


def _is_owner(member: Member) -> bool:
    return member.is_owner


def _is_admin(member: Member) -> bool:
    return member.is_admin


def _empty_list() -> dict[str, Any]:
    return {"data": [], "object": "list", "continuationToken": None}


@bp.post("")
@authorized
async def create_organization(request: Request) -> HTTPResponse:
    """The web vault's request (name, billingEmail, key, keys, collectionName, and billing fields
    pgwarden ignores: planType, seats...). The caller becomes its confirmed Owner."""
    body = _body(request)
    name = body.str("name", required=True, max_length=MAX_NAME_LENGTH)
    billing_email = body.email("billingEmail", required=True)
    key = body.str("key", required=True, max_length=MAX_KEY_LENGTH)
    public_key, private_key = _keys(body, required=True)
    collection_name = body.enc_string("collectionName", max_length=collections.MAX_NAME_LENGTH)
    caller = request.ctx.caller
    async with publish.write(request.app.ctx.pool, caller.device_identifier) as conn:
        organization = await organizations.create(conn, name, billing_email, public_key, private_key)
        await memberships.create_owner(conn, organization["id"], caller.user_id, key)
        if collection_name and collection_name.strip():
            # the Owner reaches it by its role, as every collection
            await collections.create(conn, organization["id"], collection_name, None)
    return json(organizations.organization_json(organization))


@bp.get("/<organization_id:uuid>")
@authorized
async def get_organization(request: Request, organization_id: uuid.UUID) -> HTTPResponse:
    pool = request.app.ctx.pool
    await memberships.require_member(pool, organization_id, request.ctx.caller.user_id, _is_owner)
    return json(organizations.organization_json(await organizations.require(pool, organization_id)))


@bp.route("/<organization_id:uuid>", methods=["PUT", "POST"])
@authorized
async def update_organization(request: Request, organization_id: uuid.UUID) -> HTTPResponse:
    body = _body(request)
    name = body.str("name", required=True, max_length=MAX_NAME_LENGTH)
    billing_email = body.email("billingEmail", required=True)
    keys = _keys(body, required=False)
    caller = request.ctx.caller
    async with publish.write(request.app.ctx.pool, caller.device_identifier) as conn:
        await memberships.require_member(conn, organization_id, caller.user_id, _is_owner, lock=True)
        organization = await organizations.update(conn, organization_id, name, billing_email)
        if keys is not None and organization["public_key"] is None:
            organization = await organizations.set_keys(conn, organization_id, *keys)
    return json(organizations.organization_json(organization))


@bp.delete("/<organization_id:uuid>")
@bp.post("/<organization_id:uuid>/delete", name="delete_organization_by_post")
@authorized
async def delete_organization(request: Request, organization_id: uuid.UUID) -> HTTPResponse:
    """The organization and its items, collections and members; the Owner proves the master password."""
    body = _body(request)
    caller = request.ctx.caller
    await memberships.require_member(request.app.ctx.pool, organization_id, caller.user_id, _is_owner)
    await check_master_password(request, body)
    async with publish.write(request.app.ctx.pool, caller.device_identifier) as conn:
        await memberships.require_member(conn, organization_id, caller.user_id, _is_owner, lock=True)
        members = await memberships.of_organization(conn, organization_id)
        await publish.org_keys_changed(conn, [row["user_id"] for row in members if row["user_id"]])
        await organizations.delete(conn, organization_id)
    return empty(status=200)


@bp.get("/<organization_id:uuid>/keys")
@authorized
async def get_keys(request: Request, organization_id: uuid.UUID) -> HTTPResponse:
    pool = request.app.ctx.pool
    await memberships.require_member(pool, organization_id, request.ctx.caller.user_id)
    return json(_keys_json(await organizations.require(pool, organization_id)))


@bp.post("/<organization_id:uuid>/keys")
@authorized
async def set_keys(request: Request, organization_id: uuid.UUID) -> HTTPResponse:
    """The key pair of an organization made without one; an organization keeps its first."""
    body = _body(request)
    public_key = body.str("publicKey", required=True, max_length=MAX_KEY_LENGTH)
    private_key = body.str("encryptedPrivateKey", required=True, max_length=MAX_KEY_LENGTH)
    caller = request.ctx.caller
    async with publish.write(request.app.ctx.pool, caller.device_identifier) as conn:
        await memberships.require_member(conn, organization_id, caller.user_id, _is_admin, lock=True)
        organization = await organizations.set_keys(conn, organization_id, public_key, private_key)
    return json(_keys_json(organization))


@bp.post("/<organization_id:uuid>/leave")
@authorized
async def leave(request: Request, organization_id: uuid.UUID) -> HTTPResponse:
    """The caller leaves, whatever its status; the last confirmed Owner may not."""
    caller = request.ctx.caller
    async with publish.write(request.app.ctx.pool, caller.device_identifier) as conn:
        await organizations.lock(conn, organization_id)
        own = await memberships.find_own(conn, organization_id, caller.user_id)
        if own is None:
            raise NotFound("Organization")
        if own["type"] == MemberType.OWNER and own["status"] == MemberStatus.CONFIRMED:
            await memberships.check_owner_remains(conn, organization_id, [own["id"]])
        await memberships.remove(conn, own)
    return empty(status=200)


@bp.get("/<organization_id:uuid>/groups")
@authorized
async def list_groups(request: Request, organization_id: uuid.UUID) -> HTTPResponse:
    """No groups: the clients ask for them even when the organization does not use groups."""
    await memberships.require_member(request.app.ctx.pool, organization_id, request.ctx.caller.user_id)
    return json(_empty_list())


@bp.get("/<organization_id:uuid>/policies")
@authorized
async def list_policies(request: Request, organization_id: uuid.UUID) -> HTTPResponse:
    """No policies (usePolicies is off)."""
    await memberships.require_member(request.app.ctx.pool, organization_id, request.ctx.caller.user_id)
    return json(_empty_list())
