"""Login with device: a device that is not signed in asks a signed-in one for the user key.

The flow (docs/protocol.md, "Login with device"): the waiting device posts a request, anonymous,
and waits on the anonymous hub; a signed-in device hears AuthRequest, reads the request and
answers it; the waiting device hears AuthRequestResponse, reads the answer with its access code
and logs in with the password grant (``authRequest``, the access code as the password).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from vaultapi import limits, publish
from vaultapi.auth import authorized
from vaultapi.body import Body
from vaultapi.client import client_address
from vaultapi.errors import ApiError, NotFound
from vaultapi.models import auth_requests, devices, users

__all__ = ["bp"]

bp = Blueprint("auth_requests", url_prefix="/api/auth-requests")

# src/Core/Auth/Models/Api/Request/AuthRequest/AuthRequestCreateRequestModel.cs
_DEVICE_IDENTIFIER = 50
_ACCESS_CODE = 25
#: the waiting device's public key: base64 SPKI, about 400 characters for the clients' RSA-2048
_PUBLIC_KEY = 2_000
#: the user key encrypted to it (EncString type 4)
_KEY = 2_000
_ADMIN_APPROVAL = 2


def _origin(request: Request) -> str:
    return urlsplit(request.app.ctx.config.domain).hostname or ""


def _reply(request: Request, row: object) -> HTTPResponse:
    return json(auth_requests.request_json(row, _origin(request)))  # type: ignore[arg-type]


def _check_public_key(text: str) -> None:
    try:
        key = serialization.load_der_public_key(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError):
        key = None
    if not isinstance(key, rsa.RSAPublicKey):
        raise ApiError("PublicKey is not a base64 RSA public key.", field="publicKey")


def _device_type(request: Request) -> int:
    try:
        return int(request.headers.get("device-type", ""))
    except ValueError:
        raise ApiError("Device type not provided.") from None


@bp.post("")
async def create(request: Request) -> HTTPResponse:
    body = Body.of(request)
    email = body.str("email", required=True, max_length=256)
    public_key = body.str("publicKey", required=True, max_length=_PUBLIC_KEY)
    identifier = body.str("deviceIdentifier", required=True, max_length=_DEVICE_IDENTIFIER)
    access_code = body.str("accessCode", required=True, max_length=_ACCESS_CODE)
    request_type = body.int("type", default=auth_requests.AUTHENTICATE_AND_UNLOCK)
    if request_type == _ADMIN_APPROVAL:
        raise ApiError("You must be authenticated to create a request of that type.", field="type")
    if request_type not in (auth_requests.AUTHENTICATE_AND_UNLOCK, auth_requests.UNLOCK):
        raise ApiError("Type is not a known auth request type.", field="type")
    device_type = _device_type(request)
    _check_public_key(public_key)
    # anyone may ask: each request notifies every device of the account, so asking is counted
    await limits.auth_request_attempt(request)
    pool = request.app.ctx.pool
    user = await users.find_by_email(pool, email)
    # only a device that has logged in to the account may ask (Bitwarden's default), and the
    # answer is the same for an unknown email and an unknown device
    if user is None or not await devices.is_known(pool, email, identifier):
        raise ApiError("User or known device not found.")
    async with publish.write(pool, identifier) as conn:
        row = await auth_requests.create(conn, user["id"], request_type, identifier, device_type,
                                         client_address(request), public_key, access_code)
    return _reply(request, row)


@bp.post("/admin-request")
@authorized
async def create_admin_request(request: Request) -> HTTPResponse:
    # device approval by an organization's administrators belongs to trusted-device encryption
    raise ApiError("Admin approval of devices is not available on this server.")


@bp.get("/<request_id:uuid>/response")
async def read_answer(request: Request, request_id: uuid.UUID) -> HTTPResponse:
    code = request.args.get("code", "")
    if not code or len(code) > _ACCESS_CODE:
        raise NotFound("Auth request")
    return _reply(request, await auth_requests.find_answer(request.app.ctx.pool, request_id, code))


@bp.get("")
@authorized
async def list_requests(request: Request) -> HTTPResponse:
    rows = await auth_requests.list_for_user(request.app.ctx.pool, request.ctx.caller.user_id)
    origin = _origin(request)
    return json({"data": [auth_requests.request_json(row, origin) for row in rows], "object": "list",
                 "continuationToken": None})


@bp.get("/pending")
@authorized
async def list_pending(request: Request) -> HTTPResponse:
    rows = await auth_requests.pending_for_user(request.app.ctx.pool, request.ctx.caller.user_id)
    origin = _origin(request)
    return json({"data": [auth_requests.request_json(row, origin) for row in rows], "object": "list",
                 "continuationToken": None})


@bp.get("/<request_id:uuid>")
@authorized
async def read(request: Request, request_id: uuid.UUID) -> HTTPResponse:
    return _reply(request, await auth_requests.find_for_user(request.app.ctx.pool, request_id,
                                                             request.ctx.caller.user_id))


@bp.put("/<request_id:uuid>")
@authorized
async def answer(request: Request, request_id: uuid.UUID) -> HTTPResponse:
    body = Body.of(request)
    approved = body.get("requestApproved")
    if not isinstance(approved, bool):
        raise ApiError("RequestApproved must be true or false.", field="requestApproved")
    identifier = body.str("deviceIdentifier", required=True, max_length=255)
    key = body.enc_string("key", max_length=_KEY)
    password_hash = body.str("masterPasswordHash", max_length=1024)
    caller = request.ctx.caller
    async with publish.write(request.app.ctx.pool, caller.device_identifier) as conn:
        row = await auth_requests.answer(conn, request_id, caller.user_id, identifier, approved, key, password_hash)
    return _reply(request, row)
