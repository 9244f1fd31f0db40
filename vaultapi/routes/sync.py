"""Sync: the whole vault in one reply, read from one consistent snapshot.

The items (own and organizations', models.ciphers.encoded_for_user) and the collections are
encoded one by one and sent in pieces (vaultapi.replies): a vault of tens of megabytes must not
hold up the other requests.
"""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import json_dumps

from vaultapi.auth import authorized
from vaultapi import body_limits
from vaultapi.models import ciphers, collections, folders, memberships, organizations, sends, users
from vaultapi.replies import send_json_with_lists

__all__ = ["bp"]

bp = Blueprint("sync", url_prefix="/api")


@bp.get("/sync")
@authorized
async def sync(request: Request) -> None:
    user_id = request.ctx.caller.user_id
    exclude_domains = request.args.get("excludeDomains", "false").lower() == "true"
    async with request.app.ctx.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        user = await users.find_by_id(conn, user_id)
        member_rows = await memberships.profile_rows(conn, user_id)
        folder_rows = await folders.find_by_user(conn, user_id)
        collection_rows = await collections.visible_to(conn, user_id)
        items = await ciphers.encoded_for_user(conn, user_id)
        send_rows = await sends.list_for(conn, user_id)
    # an organization may have thousands of collections: encoded one by one, as the items
    pacer = body_limits.Pacer()
    encoded_collections = []
    for row in collection_rows:
        encoded_collections.append(json_dumps(collections.details_json(row)).encode())
        await pacer.pace()
    reply = {
        "profile": users.profile_json(user, [organizations.profile_json(row) for row in member_rows]),
        "folders": [folders.folder_json(row) for row in folder_rows],
        "collections": None,
        "ciphers": None,
        "policies": [],
        "sends": [sends.send_json(row) for row in send_rows],
        "domains": None if exclude_domains else users.domains_json(user),
        "userDecryption": {
            "masterPasswordUnlock": users.master_password_unlock_json(user),
            "userKeyId": user["user_key_id"],
        },
        "object": "sync",
    }
    await send_json_with_lists(request, reply, {"collections": encoded_collections, "ciphers": items})
