"""FIDO2 WebAuthn as a second step, through python-fido2's server.

The relying party is DOMAIN's host: the clients run the ceremony on the web vault's origin (the
desktop app and the extensions through the web vault's connector page), so DOMAIN's origin is the
only one accepted. A challenge, registration's or login's, is kept in one_time_codes until it is
answered once; a signature counter that does not move forward (a cloned key) is refused, as the
Bitwarden server's FIDO2 library does. JSON here is what that library sends and reads: binary as
base64url, the options flat, the answers with their field names in any case.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import asyncpg
from fido2.server import Fido2Server
from fido2.utils import websafe_decode, websafe_encode
from fido2.webauthn import (
    AttestationObject,
    AttestedCredentialData,
    AuthenticationResponse,
    AuthenticatorAssertionResponse,
    AuthenticatorAttestationResponse,
    AuthenticatorData,
    CollectedClientData,
    PublicKeyCredentialRpEntity,
    RegistrationResponse,
    UserVerificationRequirement,
)
from sanic import Request

from core.config import Config
from vaultapi.models import two_factor

__all__ = ["MAX_KEYS", "RegistrationRefused", "finish_registration", "login_options", "start_registration",
           "verify_login"]

#: security keys one account may register (the Bitwarden server's premium limit)
MAX_KEYS = 5
#: seconds a challenge may be answered in
CHALLENGE_LIFETIME = 300
TIMEOUT_MS = 60_000
_REGISTER, _LOGIN = "webauthn-register", "webauthn-login"


class RegistrationRefused(ValueError):
    """Raised when an attestation does not answer the pending challenge."""


def _server(config: Config) -> Fido2Server:
    host = urlsplit(config.domain).hostname or "localhost"
    origin = config.domain_origin
    return Fido2Server(PublicKeyCredentialRpEntity(id=host, name="pgwarden"),
                       verify_origin=lambda given: given == origin)


def keys_of(data: dict[str, Any] | None) -> list[dict[str, Any]]:
    return list((data or {}).get("keys", []))


def _credential(key: dict[str, Any]) -> AttestedCredentialData:
    return AttestedCredentialData(websafe_decode(key["credential"]))


def _descriptor(key: dict[str, Any]) -> dict[str, str]:
    return {"type": "public-key", "id": websafe_encode(_credential(key).credential_id)}


# ---- registration ------------------------------------------------------------------------------

async def start_registration(request: Request, user: asyncpg.Record, data: dict[str, Any] | None) -> dict[str, Any]:
    """The options for navigator.credentials.create(), flat and under `options` (newer clients)."""
    keys = keys_of(data)
    if len(keys) >= MAX_KEYS:
        raise RegistrationRefused("Maximum allowed WebAuthn credential count exceeded.")
    options, state = _server(request.app.ctx.config).register_begin(
        {"id": user["id"].bytes, "name": user["email"], "displayName": user["name"] or user["email"]},
        user_verification=UserVerificationRequirement.DISCOURAGED)
    await two_factor.save_state(request.app.ctx.pool, user["id"], _REGISTER, json.dumps(state), CHALLENGE_LIFETIME)
    public = options.public_key
    flat = {
        "rp": {"id": public.rp.id, "name": public.rp.name},
        "user": {"id": websafe_encode(user["id"].bytes), "name": user["email"],
                 "displayName": user["name"] or user["email"]},
        "challenge": websafe_encode(public.challenge),
        "pubKeyCredParams": [{"type": "public-key", "alg": param.alg} for param in public.pub_key_cred_params],
        "timeout": TIMEOUT_MS,
        "attestation": "none",
        "authenticatorSelection": {"requireResidentKey": False, "userVerification": "discouraged"},
        "excludeCredentials": [_descriptor(key) for key in keys],
        "extensions": {},
        "status": "ok",
        "errorMessage": "",
    }
    return {**flat, "options": flat}


async def finish_registration(request: Request, user: asyncpg.Record, data: dict[str, Any] | None,
                              key_id: int, name: str, device_response: dict[str, Any]) -> dict[str, Any]:
    """The provider's data with the new key in slot key_id (1 to MAX_KEYS, replacing one there)."""
    state = await two_factor.consume_state(request.app.ctx.pool, user["id"], _REGISTER)
    if state is None:
        raise RegistrationRefused("No WebAuthn registration is pending, or it expired.")
    try:
        raw_id = websafe_decode(_field(device_response, "rawId"))
        answer = _field(device_response, "response")
        registration = RegistrationResponse(raw_id=raw_id, response=AuthenticatorAttestationResponse(
            client_data=CollectedClientData(websafe_decode(_field(answer, "clientDataJSON"))),
            attestation_object=AttestationObject(websafe_decode(_field(answer, "attestationObject")))))
        auth_data = _server(request.app.ctx.config).register_complete(state, registration)
    except (ValueError, KeyError, TypeError) as error:
        raise RegistrationRefused("Unable to complete WebAuthn registration.") from error
    credential = auth_data.credential_data
    if credential is None:
        raise RegistrationRefused("Unable to complete WebAuthn registration.")
    keys = [key for key in keys_of(data) if key["id"] != key_id]
    if any(_credential(key).credential_id == credential.credential_id for key in keys):
        raise RegistrationRefused("This security key is registered already.")
    keys.append({"id": key_id, "name": name, "credential": websafe_encode(bytes(credential)),
                 "counter": auth_data.counter})
    return {"keys": sorted(keys, key=lambda key: key["id"])}


# ---- login -------------------------------------------------------------------------------------

async def login_options(request: Request, user: asyncpg.Record, data: dict[str, Any]) -> dict[str, Any]:
    """The challenge's parameters for navigator.credentials.get(); the challenge is kept to be
    answered once."""
    keys = keys_of(data)
    options, state = _server(request.app.ctx.config).authenticate_begin(
        [_credential(key) for key in keys], user_verification=UserVerificationRequirement.DISCOURAGED)
    await two_factor.save_state(request.app.ctx.pool, user["id"], _LOGIN, json.dumps(state), CHALLENGE_LIFETIME)
    return {
        "challenge": websafe_encode(options.public_key.challenge),
        "timeout": TIMEOUT_MS,
        "rpId": options.public_key.rp_id,
        "allowCredentials": [_descriptor(key) for key in keys],
        "userVerification": "discouraged",
        "extensions": {},
        "status": "ok",
        "errorMessage": "",
    }


async def verify_login(request: Request, user: asyncpg.Record, data: dict[str, Any], token: str) -> bool:
    """Whether the token (the client's assertion, as JSON) answers the pending challenge with one
    of the user's keys and a counter that moved on; the challenge is used up either way."""
    pool = request.app.ctx.pool
    state = await two_factor.consume_state(pool, user["id"], _LOGIN)
    if state is None:
        return False
    keys = keys_of(data)
    try:
        assertion = json.loads(token)
        answer = _field(assertion, "response")
        auth_data = AuthenticatorData(websafe_decode(_field(answer, "authenticatorData")))
        response = AuthenticationResponse(raw_id=websafe_decode(_field(assertion, "rawId")),
                                          response=AuthenticatorAssertionResponse(
            client_data=CollectedClientData(websafe_decode(_field(answer, "clientDataJSON"))),
            authenticator_data=auth_data, signature=websafe_decode(_field(answer, "signature"))))
        used = _server(request.app.ctx.config).authenticate_complete(
            state, [_credential(key) for key in keys], response)
    except (ValueError, KeyError, TypeError, AttributeError):
        return False
    [key] = [key for key in keys if _credential(key).credential_id == used.credential_id]
    # a counter that does not move forward: a copy of the key is in use
    if (auth_data.counter or key["counter"]) and auth_data.counter <= key["counter"]:
        return False
    await two_factor.set_key_counter(pool, user["id"], key["id"], auth_data.counter)
    return True


def _field(value: Any, name: str) -> Any:
    """A field by name in any case (the clients send clientDataJson, the standard clientDataJSON)."""
    if not isinstance(value, dict):
        raise KeyError(name)
    for key, found in value.items():
        if key.lower() == name.lower():
            return found
    raise KeyError(name)
