"""Devices: whether a device has logged in to an account before."""

from __future__ import annotations

import base64
import binascii

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from core import capabilities
from vaultapi.errors import ApiError
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
