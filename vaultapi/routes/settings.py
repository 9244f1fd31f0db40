"""Settings: the user's equivalent domains (saving them tells the other devices to sync)."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from vaultapi import publish
from vaultapi.auth import authorized
from vaultapi.body import Body
from vaultapi.errors import ApiError
from vaultapi.models import users

__all__ = ["bp"]

bp = Blueprint("settings", url_prefix="/api/settings")


@bp.get("/domains")
@authorized
async def get_domains(request: Request) -> HTTPResponse:
    return json(users.domains_json(request.ctx.caller.user))


@bp.route("/domains", methods=["PUT", "POST"])
@authorized
async def save_domains(request: Request) -> HTTPResponse:
    body = Body.of(request)
    groups = body.list("equivalentDomains") or []
    if not all(isinstance(group, list) and all(isinstance(d, str) for d in group) for group in groups):
        raise ApiError("equivalentDomains must be a list of lists of domains.", field="equivalentDomains")
    excluded = body.list("excludedGlobalEquivalentDomains") or []
    if not all(isinstance(e, int) and not isinstance(e, bool) for e in excluded):
        raise ApiError("excludedGlobalEquivalentDomains must be a list of numbers.",
                       field="excludedGlobalEquivalentDomains")
    caller = request.ctx.caller
    async with publish.write(request.app.ctx.pool, caller.device_identifier) as conn:
        user = await users.save_domains(conn, caller.user_id, groups, excluded)
    return json(users.domains_json(user))
