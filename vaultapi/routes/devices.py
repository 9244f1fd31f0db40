"""Devices: whether a device has logged in to an account before."""

from __future__ import annotations

import base64
import binascii

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from vaultapi.errors import ApiError
from vaultapi.models import devices

__all__ = ["bp"]

bp = Blueprint("devices", url_prefix="/api/devices")


def _email_from_base64url(text: str) -> str:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True).decode()
    except (binascii.Error, ValueError):
        raise ApiError("X-Request-Email is not base64url-encoded.") from None


@bp.get("/knowndevice")
async def known_device(request: Request) -> HTTPResponse:
    encoded = request.headers.get("x-request-email", "")
    identifier = request.headers.get("x-device-identifier", "")
    if not encoded or not identifier:
        raise ApiError("X-Request-Email and X-Device-Identifier headers are required.")
    email = _email_from_base64url(encoded)
    return json(await devices.is_known(request.app.ctx.pool, email, identifier))


@bp.get("/knowndevice/<email>/<identifier>")
async def known_device_legacy(request: Request, email: str, identifier: str) -> HTTPResponse:
    return json(await devices.is_known(request.app.ctx.pool, email, identifier))
