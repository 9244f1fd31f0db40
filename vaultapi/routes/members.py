"""An organization's members: invite, list, confirm, edit, revoke, restore, remove; and the public
key an admin wraps the organization key to.

Every route needs a confirmed member who may manage users (Owners, Admins, Custom members with
manageUsers); for anyone else the organization is a 404. The roles a member may act on are in
vaultapi/models/memberships.py. Bulk routes answer one result per id, {id, error}, and apply
the others when one fails.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty, json

from vaultapi import publish
from vaultapi.auth import authorized
from vaultapi.body import Body, is_email
from vaultapi.errors import ApiError, NotFound
from vaultapi.mail import messages
from vaultapi.mail.outbox import enqueue, require_mail
from vaultapi.models import collections, memberships, organizations, users
from vaultapi.models.collections import Grant
from vaultapi.models.memberships import PERMISSIONS, Member, MemberStatus, MemberType

__all__ = ["bp"]

bp = Blueprint("members", url_prefix="/api")

USERS = "/organizations/<organization_id:uuid>/users"
ONE_USER = USERS + "/<membership_id:uuid>"
#: Bitwarden's cap of addresses in one invitation
MAX_INVITED_EMAILS = 20
MAX_KEY_LENGTH = 10_000

Action = Callable[[asyncpg.Connection, Member, asyncpg.Record], Awaitable[None]]


def _body(request: Request) -> Body:
    return Body.of(request)


def _manages_users(member: Member) -> bool:
    return member.can_manage_users


def _list(data: list[Any]) -> dict[str, Any]:
    return {"data": data, "object": "list", "continuationToken": None}


def _member_type(body: Body) -> MemberType:
    value = body.int("type", required=True)
    if value not in MemberType._value2member_map_:
        raise ApiError("Invalid member type.", field="type")
    return MemberType(value)


def _permissions(body: Body, member_type: MemberType) -> dict[str, bool] | None:
    """A Custom member's permissions, each true or false; other types have none. Unknown keys
    (the clients send a few) are dropped."""
    if member_type != MemberType.CUSTOM:
        return None
    sent = body.object("permissions") or Body({})
    return {name: sent.get(name) is True for name in PERMISSIONS}


def _check_may_manage(actor: Member, member_type: int) -> None:
    if actor.may_manage(member_type):
        return
    if member_type == MemberType.OWNER:
        raise ApiError("Only an Owner can manage another Owner.", field="type")
    raise ApiError("Only an Owner or an Admin can manage Admins and Custom members.", field="type")


async def _check_may_grant(conn: asyncpg.Connection, actor: Member, collection_ids: set[uuid.UUID]) -> None:
    """The actor may give or take away access to these collections: any with the right to edit
    any collection, else those it manages. Others are as unknown as missing ones."""
    await collections.check_in_organization(conn, actor.organization_id, collection_ids)
    if actor.can_edit_any_collection:
        return
    managed = {row["id"] for row in await collections.visible_to(conn, actor.user_id, actor.organization_id)
               if row["manage"]}
    if not collection_ids <= managed:
        raise NotFound("Collection")


# ---- invitations ---------------------------------------------------------------------------

@bp.post(USERS + "/invite")
@authorized
async def invite(request: Request, organization_id: uuid.UUID) -> HTTPResponse:
    """Without mail to invite by, an address with an account is Accepted at once; one without
    stays Invited until it registers. With mail, each address gets a link to accept by (or to
    register by). Addresses already in the organization are skipped."""
    body = _body(request)
    sent = body.list("emails", required=True) or []
    # counted before any address is read (OrganizationUserInviteRequestModel caps it at 20)
    if len(sent) > MAX_INVITED_EMAILS:
        raise ApiError(f"Invite between 1 and {MAX_INVITED_EMAILS} e-mail addresses at a time.", field="emails")
    emails: list[str] = []
    for value in sent:
        if not isinstance(value, str) or not is_email(value.strip()):
            raise ApiError("The Emails field holds an invalid e-mail address.", field="emails")
        emails.append(value.strip().lower())
    emails = list(dict.fromkeys(emails))
    if not 1 <= len(emails) <= MAX_INVITED_EMAILS:
        raise ApiError(f"Invite between 1 and {MAX_INVITED_EMAILS} e-mail addresses at a time.", field="emails")
    member_type = _member_type(body)
    permissions = _permissions(body, member_type)
    grants = Grant.parse_list(body, "collections") or []
    caller = request.ctx.caller
    async with publish.write(request.app.ctx.pool, caller.device_identifier) as conn:
        actor = await memberships.require_member(conn, organization_id, caller.user_id, _manages_users, lock=True)
        _check_may_manage(actor, member_type)
        await _check_may_grant(conn, actor, {grant.id for grant in grants})
        by_mail = request.app.ctx.config.mail_enabled
        invited = await memberships.invite(conn, organization_id, emails, member_type, permissions, by_mail=by_mail)
        for row in invited:
            await collections.grant_to_member(conn, organization_id, row["id"], grants, replace=False)
        if by_mail:
            organization = await organizations.require(conn, organization_id)
            for row in invited:
                await _mail_invitation(request, conn, organization, row["id"], row["email"], row["has_account"])
    return empty(status=200)


async def _mail_invitation(request: Request, conn: asyncpg.Connection, organization: asyncpg.Record,
                           membership_id: uuid.UUID, email: str, has_account: bool) -> None:
    """The invitation's link, with a token (5 days) that names the membership and the address."""
    token = request.app.ctx.purpose_tokens.issue("invite", str(membership_id), email=email,
                                                  org=str(organization["id"]))
    await enqueue(conn, messages.invitation(email, request.app.ctx.config.domain, organization["name"], {
        "organizationId": str(organization["id"]), "organizationUserId": str(membership_id), "email": email,
        "organizationName": organization["name"], "token": token, "initOrganization": "false",
        "orgUserHasExistingUser": "true" if has_account else "false"}))


@bp.post(ONE_USER + "/reinvite")
@authorized
async def reinvite(request: Request, organization_id: uuid.UUID, membership_id: uuid.UUID) -> HTTPResponse:
    """The invitation's mail once more, with a new token."""
    require_mail(request)
    caller = request.ctx.caller
    async with publish.write(request.app.ctx.pool, caller.device_identifier) as conn:
        actor = await memberships.require_member(conn, organization_id, caller.user_id, _manages_users)
        [target] = await memberships.require_targets(conn, actor, [membership_id])
        if target["status"] != MemberStatus.INVITED or target["email"] is None:
            raise ApiError("User invalid.")
        organization = await organizations.require(conn, organization_id)
        has_account = await users.find_by_email(conn, target["email"]) is not None
        await _mail_invitation(request, conn, organization, membership_id, target["email"], has_account)
    return empty(status=200)


@bp.post(ONE_USER + "/accept")
@authorized
async def accept(request: Request, organization_id: uuid.UUID, membership_id: uuid.UUID) -> HTTPResponse:
    """The invited address's account takes the invitation with the mailed token: Accepted, for
    an admin to confirm."""
    token = _body(request).str("token", required=True, max_length=4096)
    claims = await request.app.ctx.purpose_tokens.claims("invite", token)
    caller = request.ctx.caller
    email = caller.user["email"].lower()
    if not claims or (claims["sub"], claims.get("org"), claims.get("email")) != (
            str(membership_id), str(organization_id), email):
        raise ApiError("Invalid token.", field="token")
    async with publish.write(request.app.ctx.pool, caller.device_identifier) as conn:
        await memberships.accept(conn, organization_id, membership_id, caller.user_id, email)
    return empty(status=200)


# ---- reading -------------------------------------------------------------------------------

@bp.get(USERS)
@authorized
async def list_members(request: Request, organization_id: uuid.UUID) -> HTTPResponse:
    async with request.app.ctx.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        await memberships.require_member(conn, organization_id, request.ctx.caller.user_id, _manages_users)
        rows = await memberships.of_organization(conn, organization_id)
        grants = await memberships.grants_of(conn, [row["id"] for row in rows])
    return json(_list([memberships.list_json(row, grants[row["id"]]) for row in rows]))


@bp.get(USERS + "/mini-details")
@authorized
async def list_members_briefly(request: Request, organization_id: uuid.UUID) -> HTTPResponse:
    """Who is in the organization, for those who give collections to members: name, email, type
    and status (OrganizationUserUserMiniDetailsResponseModel)."""
    user_id = request.ctx.caller.user_id
    async with request.app.ctx.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        actor = await memberships.require_member(conn, organization_id, user_id)
        if not (actor.can_manage_users or actor.can_create_collections or actor.can_edit_any_collection
                or any(row["manage"] for row in await collections.visible_to(conn, user_id, organization_id))):
            raise NotFound("Organization")
        rows = await memberships.of_organization(conn, organization_id)
    return json(_list([memberships.mini_details_json(row) for row in rows]))


@bp.get(ONE_USER)
@authorized
async def get_member(request: Request, organization_id: uuid.UUID, membership_id: uuid.UUID) -> HTTPResponse:
    async with request.app.ctx.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        await memberships.require_member(conn, organization_id, request.ctx.caller.user_id, _manages_users)
        rows = await memberships.find_in_organization(conn, organization_id, [membership_id])
        if not rows:
            raise NotFound("User")
        grants = await memberships.grants_of(conn, [membership_id])
    return json(memberships.details_json(rows[0], grants[membership_id]))


@bp.post(USERS + "/public-keys")
@authorized
async def public_keys(request: Request, organization_id: uuid.UUID) -> HTTPResponse:
    """The public keys of members with an account, for confirming several at once."""
    ids = _body(request).uuid_list("ids")
    async with request.app.ctx.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        await memberships.require_member(conn, organization_id, request.ctx.caller.user_id, _manages_users)
        rows = await memberships.find_in_organization(conn, organization_id, ids)
    return json(_list([
        {"id": str(row["id"]), "userId": str(row["user_id"]), "key": row["member_public_key"],
         "object": "organizationUserPublicKeyResponseModel"}
        for row in rows if row["user_id"] is not None and row["member_public_key"]
    ]))


@bp.get("/users/<user_id:uuid>/public-key")
@authorized
async def user_public_key(request: Request, user_id: uuid.UUID) -> HTTPResponse:
    """A user's public key, for the user and for whoever manages users of an organization the
    user is (or is invited to be) a member of; anyone else gets a 404."""
    key = await memberships.public_key_for(request.app.ctx.pool, request.ctx.caller.user_id, user_id)
    if key is None:
        raise NotFound("User")
    return json({"userId": str(user_id), "publicKey": key, "object": "userKey"})


# ---- confirming ----------------------------------------------------------------------------

@bp.post(ONE_USER + "/confirm")
@authorized
async def confirm(request: Request, organization_id: uuid.UUID, membership_id: uuid.UUID) -> HTTPResponse:
    """The organization key wrapped to the member's public key (defaultUserCollectionName, for
    "My items" collections pgwarden does not have, is ignored)."""
    key = _body(request).str("key", required=True, max_length=MAX_KEY_LENGTH)
    await _act_on_one(request, organization_id, membership_id, _confirm_with(key))
    return empty(status=200)


@bp.post(USERS + "/confirm")
@authorized
async def confirm_many(request: Request, organization_id: uuid.UUID) -> HTTPResponse:
    keys: dict[uuid.UUID, str] = {}
    for entry in _body(request).objects("keys"):
        keys[entry.uuid("id", required=True)] = entry.str("key", required=True, max_length=MAX_KEY_LENGTH)

    async def confirm_one(conn: asyncpg.Connection, actor: Member, target: asyncpg.Record) -> None:
        await _confirm_with(keys[target["id"]])(conn, actor, target)

    return json(_list(await _act_on_many(request, organization_id, list(keys), confirm_one)))


def _confirm_with(key: str) -> Action:
    async def confirm_one(conn: asyncpg.Connection, actor: Member, target: asyncpg.Record) -> None:
        await memberships.confirm(conn, target, key)

    return confirm_one


# ---- editing -------------------------------------------------------------------------------

@bp.route(ONE_USER, methods=["PUT", "POST"])
@authorized
async def update_member(request: Request, organization_id: uuid.UUID, membership_id: uuid.UUID) -> HTTPResponse:
    """The member's role and permissions, and its collections (null: left as they are; a list,
    even empty, replaces them)."""
    body = _body(request)
    member_type = _member_type(body)
    permissions = _permissions(body, member_type)
    grants = Grant.parse_list(body, "collections")

    async def update_one(conn: asyncpg.Connection, actor: Member, target: asyncpg.Record) -> None:
        _check_may_manage(actor, member_type)
        if (target["type"] == MemberType.OWNER and member_type != MemberType.OWNER
                and target["status"] == MemberStatus.CONFIRMED):
            await memberships.check_owner_remains(conn, organization_id, [target["id"]])
        if grants is not None:
            held = {uuid.UUID(grant["id"]) for grant in (await memberships.grants_of(conn, [target["id"]]))[target["id"]]}
            wanted = {grant.id for grant in grants}
            await _check_may_grant(conn, actor, wanted | held)
        await memberships.update(conn, target, member_type, permissions)
        if grants is not None:
            await collections.grant_to_member(conn, organization_id, target["id"], grants, replace=True)

    await _act_on_one(request, organization_id, membership_id, update_one)
    return empty(status=200)


# ---- revoking, restoring, removing ----------------------------------------------------------

async def _revoke(conn: asyncpg.Connection, actor: Member, target: asyncpg.Record) -> None:
    if target["id"] == actor.id:
        raise ApiError("You cannot revoke yourself.")
    if target["type"] == MemberType.OWNER and target["status"] == MemberStatus.CONFIRMED:
        await memberships.check_owner_remains(conn, actor.organization_id, [target["id"]])
    await memberships.revoke(conn, target)


async def _restore(conn: asyncpg.Connection, actor: Member, target: asyncpg.Record) -> None:
    await memberships.restore(conn, target)


async def _remove(conn: asyncpg.Connection, actor: Member, target: asyncpg.Record) -> None:
    if target["id"] == actor.id:
        raise ApiError("You cannot remove yourself.")
    if target["type"] == MemberType.OWNER and target["status"] == MemberStatus.CONFIRMED:
        await memberships.check_owner_remains(conn, actor.organization_id, [target["id"]])
    await memberships.remove(conn, target)


@bp.route(ONE_USER + "/revoke", methods=["PUT", "PATCH"])
@authorized
async def revoke(request: Request, organization_id: uuid.UUID, membership_id: uuid.UUID) -> HTTPResponse:
    await _act_on_one(request, organization_id, membership_id, _revoke)
    return empty(status=200)


@bp.route(USERS + "/revoke", methods=["PUT", "PATCH"])
@authorized
async def revoke_many(request: Request, organization_id: uuid.UUID) -> HTTPResponse:
    ids = _body(request).uuid_list("ids")
    return json(_list(await _act_on_many(request, organization_id, ids, _revoke)))


@bp.route(ONE_USER + "/restore", methods=["PUT", "PATCH"])
@bp.put(ONE_USER + "/restore/vnext", name="restore_vnext")
@authorized
async def restore(request: Request, organization_id: uuid.UUID, membership_id: uuid.UUID) -> HTTPResponse:
    await _act_on_one(request, organization_id, membership_id, _restore)
    return empty(status=200)


@bp.route(USERS + "/restore", methods=["PUT", "PATCH"])
@authorized
async def restore_many(request: Request, organization_id: uuid.UUID) -> HTTPResponse:
    ids = _body(request).uuid_list("ids")
    return json(_list(await _act_on_many(request, organization_id, ids, _restore)))


@bp.delete(ONE_USER)
@bp.post(ONE_USER + "/remove", name="remove_by_post")
@bp.post(ONE_USER + "/delete", name="remove_by_delete_post")
@authorized
async def remove(request: Request, organization_id: uuid.UUID, membership_id: uuid.UUID) -> HTTPResponse:
    await _act_on_one(request, organization_id, membership_id, _remove)
    return empty(status=200)


@bp.delete(USERS)
@bp.post(USERS + "/remove", name="remove_many_by_post")
@authorized
async def remove_many(request: Request, organization_id: uuid.UUID) -> HTTPResponse:
    ids = _body(request).uuid_list("ids")
    return json(_list(await _act_on_many(request, organization_id, ids, _remove)))


# ---- one or many, each in the organization's lock ------------------------------------------

async def _act_on_one(request: Request, organization_id: uuid.UUID, membership_id: uuid.UUID,
                      action: Action) -> None:
    caller = request.ctx.caller
    async with publish.write(request.app.ctx.pool, caller.device_identifier) as conn:
        actor = await memberships.require_member(conn, organization_id, caller.user_id, _manages_users, lock=True)
        [target] = await memberships.require_targets(conn, actor, [membership_id])
        await action(conn, actor, target)


async def _act_on_many(request: Request, organization_id: uuid.UUID, ids: list[uuid.UUID],
                       action: Action) -> list[dict[str, Any]]:
    """The action on each member; one refused leaves the others done, and says why."""
    if not ids:
        raise ApiError("No ids given.", field="ids")
    caller = request.ctx.caller
    results = []
    async with publish.write(request.app.ctx.pool, caller.device_identifier) as conn:
        actor = await memberships.require_member(conn, organization_id, caller.user_id, _manages_users, lock=True)
        targets = {row["id"]: row for row in await memberships.find_in_organization(conn, organization_id, ids)}
        for membership_id in dict.fromkeys(ids):
            target = targets.get(membership_id)
            error = ""
            try:
                if target is None or not actor.may_manage(target["type"]):
                    raise NotFound("User")
                async with conn.transaction():  # a savepoint: a refusal undoes this one only
                    await action(conn, actor, target)
            except ApiError as refused:
                error = refused.message
            results.append({"id": str(membership_id), "error": error, "object": "OrganizationBulkConfirmResponseModel"})
    return results
