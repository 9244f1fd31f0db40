"""Server configuration the clients read before anything else, and the health check."""

from __future__ import annotations

from datetime import datetime, timezone

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from vaultapi.dates import iso

__all__ = ["SERVER_VERSION", "bp"]

bp = Blueprint("config")

#: the Bitwarden server version whose API this one speaks; clients gate features on it
SERVER_VERSION = "2025.12.0"


@bp.get("/api/config")
async def config(request: Request) -> HTTPResponse:
    settings = request.app.ctx.config
    domain = settings.domain.rstrip("/")
    return json({
        "version": SERVER_VERSION,
        "gitHash": "pgwarden",
        # shown by the clients as the third-party server they talk to
        "server": {"name": "pgwarden", "url": domain},
        "environment": {
            "vault": domain,
            "api": f"{domain}/api",
            "identity": f"{domain}/identity",
            "notifications": f"{domain}/notifications",
            "sso": "",
        },
        # every feature flag off: clients then use the long-standing behaviour
        "featureStates": {},
        "push": {"pushTechnology": 0, "vapidPublicKey": None},
        "settings": {"disableUserRegistration": not settings.signups_allowed},
        "object": "config",
    })


@bp.get("/api/version")
async def version(request: Request) -> HTTPResponse:
    return json(SERVER_VERSION)


@bp.get("/alive")
@bp.get("/api/alive", name="api_alive")
async def alive(request: Request) -> HTTPResponse:
    await request.app.ctx.pool.fetchval("SELECT 1")
    return json(iso(datetime.now(timezone.utc)))
