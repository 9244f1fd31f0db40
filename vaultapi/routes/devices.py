"""Devices: whether a device has logged in to an account before; the account's devices, and
deactivating one (its sessions end at once)."""

from __future__ import annotations

import base64
import binascii
import uuid

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty, json

from core import capabilities
from vaultapi import publish
from vaultapi.auth import authorized
from vaultapi.errors import ApiError, NotFound
from vaultapi.models import devices

__all__ = ["bp"]

bp = Blueprint("devices", url_prefix="/api/devices")


def _email_from_base64url(text: str) -> str:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True).decode()
    except (binascii.Error, ValueError):
        raise ApiError("X-Request-Email is not base64url-encoded.") from None


async def _known(request: Request, email: str, identifier: str) -> bool:
    # true makes the login page offer login with device: held back until that exists
    return capabilities.LOGIN_WITH_DEVICE and await devices.is_known(request.app.ctx.pool, email, identifier)


@bp.get("/knowndevice")
async def known_device(request: Request) -> HTTPResponse:
    encoded = request.headers.get("x-request-email", "")
    identifier = request.headers.get("x-device-identifier", "")
    if not encoded or not identifier:
        raise ApiError("X-Request-Email and X-Device-Identifier headers are required.")
    email = _email_from_base64url(encoded)
    return json(await _known(request, email, identifier))


@bp.get("/knowndevice/<email>/<identifier>")
async def known_device_legacy(request: Request, email: str, identifier: str) -> HTTPResponse:
    return json(await _known(request, email, identifier))


@bp.get("")
@authorized
async def list_devices(request: Request) -> HTTPResponse:
    rows = await devices.list_for_user(request.app.ctx.pool, request.ctx.caller.user_id)
    return json({"data": [devices.device_json(row) for row in rows], "object": "list", "continuationToken": None})


async def _one(request: Request, **which: object) -> HTTPResponse:
    row = await devices.find(request.app.ctx.pool, request.ctx.caller.user_id, **which)  # type: ignore[arg-type]
    if row is None:
        raise NotFound("Device")
    return json(devices.device_json(row))


@bp.get("/<device_id:uuid>")
@authorized
async def read_device(request: Request, device_id: uuid.UUID) -> HTTPResponse:
    return await _one(request, device_id=device_id)


@bp.get("/identifier/<identifier>")
@authorized
async def read_device_by_identifier(request: Request, identifier: str) -> HTTPResponse:
    return await _one(request, identifier=identifier)


@bp.post("/<device_id:uuid>/deactivate")
@bp.delete("/<device_id:uuid>", name="deactivate_device_by_delete")
@bp.post("/<device_id:uuid>/delete", name="deactivate_device_by_post")
@authorized
async def deactivate(request: Request, device_id: uuid.UUID) -> HTTPResponse:
    """Its refresh token revoked, its access tokens refused, its hub connections closed."""
    caller = request.ctx.caller
    async with publish.write(request.app.ctx.pool, caller.device_identifier) as conn:
        if not await devices.deactivate(conn, caller.user_id, device_id):
            raise NotFound("Device")
    return empty(status=200)
