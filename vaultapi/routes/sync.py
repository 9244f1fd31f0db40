"""Sync: the whole vault in one reply, read from one consistent snapshot.

The items are read and encoded one by one (models.ciphers.encoded_by_user) and sent in pieces
(vaultapi.replies): a vault of tens of megabytes must not hold up the other requests.
"""

from __future__ import annotations

from sanic import Blueprint, Request

from vaultapi.auth import authorized
from vaultapi.models import ciphers, folders, users
from vaultapi.replies import send_json_with_items

__all__ = ["bp"]

bp = Blueprint("sync", url_prefix="/api")


@bp.get("/sync")
@authorized
async def sync(request: Request) -> None:
    user_id = request.ctx.caller.user_id
    exclude_domains = request.args.get("excludeDomains", "false").lower() == "true"
    async with request.app.ctx.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        user = await users.find_by_id(conn, user_id)
        folder_rows = await folders.find_by_user(conn, user_id)
        items = await ciphers.encoded_by_user(conn, user_id)
    reply = {
        "profile": users.profile_json(user),
        "folders": [folders.folder_json(row) for row in folder_rows],
        "collections": [],
        "ciphers": None,
        "policies": [],
        "sends": [],
        "domains": None if exclude_domains else users.domains_json(user),
        "userDecryption": {
            "masterPasswordUnlock": users.master_password_unlock_json(user),
            "userKeyId": user["user_key_id"],
        },
        "object": "sync",
    }
    await send_json_with_items(request, reply, "ciphers", items)
