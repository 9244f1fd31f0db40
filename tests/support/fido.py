"""A security key in software, built from python-fido2's own data types: it answers the
server's WebAuthn options as a browser and an authenticator together would, in the JSON the
Bitwarden clients send."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from fido2.cose import ES256
from fido2.utils import websafe_decode, websafe_encode
from fido2.webauthn import (
    Aaguid,
    AttestationObject,
    AttestedCredentialData,
    AuthenticatorData,
    CollectedClientData,
)

__all__ = ["SoftKey"]

FLAGS = AuthenticatorData.FLAG


class SoftKey:
    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.private_key = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = os.urandom(32)
        self.counter = 0

    def register(self, options: dict[str, Any]) -> dict[str, Any]:
        """The deviceResponse for navigator.credentials.create(options)."""
        rp_id = options["rp"]["id"]
        client_data = CollectedClientData.create("webauthn.create", websafe_decode(options["challenge"]), self.origin)
        credential = AttestedCredentialData.create(
            Aaguid.NONE, self.credential_id, ES256.from_cryptography_key(self.private_key.public_key()))
        auth_data = AuthenticatorData.create(hashlib.sha256(rp_id.encode()).digest(), FLAGS.UP | FLAGS.AT,
                                             self.counter, credential)
        attestation = AttestationObject.create("none", auth_data, {})
        raw_id = websafe_encode(self.credential_id)
        # as the clients send it: clientDataJson, not clientDataJSON
        return {"id": raw_id, "rawId": raw_id, "type": "public-key", "extensions": {},
                "response": {"attestationObject": websafe_encode(bytes(attestation)),
                             "clientDataJson": websafe_encode(bytes(client_data))}}

    def sign(self, options: dict[str, Any], *, counter_step: int = 1, challenge: str | None = None) -> str:
        """The twoFactorToken for navigator.credentials.get(options): the assertion as JSON."""
        self.counter += counter_step
        client_data = CollectedClientData.create(
            "webauthn.get", websafe_decode(challenge or options["challenge"]), self.origin)
        auth_data = AuthenticatorData.create(hashlib.sha256(options["rpId"].encode()).digest(), FLAGS.UP,
                                             self.counter)
        signature = self.private_key.sign(bytes(auth_data) + client_data.hash, ec.ECDSA(hashes.SHA256()))
        raw_id = websafe_encode(self.credential_id)
        return json.dumps({"id": raw_id, "rawId": raw_id, "type": "public-key", "extensions": {},
                           "response": {"authenticatorData": websafe_encode(bytes(auth_data)),
                                        "clientDataJson": websafe_encode(bytes(client_data)),
                                        "signature": websafe_encode(signature), "userHandle": None}})
