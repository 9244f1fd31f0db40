"""Sync: the whole vault in one reply, read from one consistent snapshot."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from vaultapi.auth import authorized
from vaultapi.models import ciphers, collections, folders, memberships, organizations, users

__all__ = ["bp"]

bp = Blueprint("sync", url_prefix="/api")


@bp.get("/sync")
@authorized
async def sync(request: Request) -> HTTPResponse:
    user_id = request.ctx.caller.user_id
    exclude_domains = request.args.get("excludeDomains", "false").lower() == "true"
    async with request.app.ctx.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        user = await users.find_by_id(conn, user_id)
        member_rows = await memberships.profile_rows(conn, user_id)
        folder_rows = await folders.find_by_user(conn, user_id)
        collection_rows = await collections.visible_to(conn, user_id)
        items = await ciphers.find_by_user(conn, user_id)
    return json({
        "profile": users.profile_json(user, [organizations.profile_json(row) for row in member_rows]),
        "folders": [folders.folder_json(row) for row in folder_rows],
        "collections": [collections.details_json(row) for row in collection_rows],
        "ciphers": [ciphers.cipher_json(item, user_id) for item in items],
        "policies": [],
        "sends": [],
        "domains": None if exclude_domains else users.domains_json(user),
        "userDecryption": {
            "masterPasswordUnlock": users.master_password_unlock_json(user),
            "userKeyId": user["user_key_id"],
        },
        "object": "sync",
    })
