"""Access tokens: RS256 JWTs signed by the API and verified by anyone holding the public key.

The key pair lives in the database (table signing_keys), made once by whichever process gets
there first. So every API replica signs with the same key and every hub verifies with it, and
a deployment with several replicas needs no key files.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = [
    "ALGORITHM",
    "SigningKeys",
    "TokenError",
    "TokenIssuer",
    "TokenVerifier",
    "ensure_signing_keys",
    "load_public_key",
    "load_signing_keys",
]

ALGORITHM = "RS256"


class TokenError(Exception):
    """Raised when an access token is missing, malformed, forged, expired or not yet valid."""


@dataclass(frozen=True)
class SigningKeys:
    private_key_pem: str
    public_key_pem: str

    @classmethod
    def generate(cls) -> SigningKeys:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        private_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        public_pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return cls(private_pem.decode(), public_pem.decode())


async def ensure_signing_keys(conn: asyncpg.Connection) -> SigningKeys:
    """The database's key pair, generated and stored first if there is none yet (race-free)."""
    row = await conn.fetchrow("SELECT private_key_pem, public_key_pem FROM signing_keys")
    if row is None:
        fresh = SigningKeys.generate()
        await conn.execute(
            "INSERT INTO signing_keys (private_key_pem, public_key_pem) VALUES ($1, $2)"
            " ON CONFLICT (id) DO NOTHING",
            fresh.private_key_pem,
            fresh.public_key_pem,
        )
        row = await conn.fetchrow("SELECT private_key_pem, public_key_pem FROM signing_keys")
    return SigningKeys(row["private_key_pem"], row["public_key_pem"])


async def load_signing_keys(conn: asyncpg.Connection | asyncpg.Pool) -> SigningKeys:
    """The database's key pair (the API signs with it); core.database.prepare makes it."""
    row = await conn.fetchrow("SELECT private_key_pem, public_key_pem FROM signing_keys")
    if row is None:
        raise RuntimeError("the database has no signing key yet: run `pgwarden migrate` first")
    return SigningKeys(row["private_key_pem"], row["public_key_pem"])


async def load_public_key(conn: asyncpg.Connection | asyncpg.Pool) -> str:
    """The public key alone: all the hub needs to verify tokens."""
    key = await conn.fetchval("SELECT public_key_pem FROM signing_keys")
    if key is None:
        raise RuntimeError("the database has no signing key yet: run `pgwarden migrate` first")
    return key


class TokenIssuer:
    def __init__(self, private_key_pem: str, issuer: str, lifetime: int) -> None:
        self._key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
        self.issuer = issuer
        self.lifetime = lifetime

    def issue(self, claims: Mapping[str, Any]) -> str:
        """Sign claims; nbf, exp and iss are added here."""
        now = int(time.time())
        body = {"nbf": now, "exp": now + self.lifetime, "iss": self.issuer, **claims}
        return jwt.encode(body, self._key, algorithm=ALGORITHM)


class TokenVerifier:
    def __init__(self, public_key_pem: str, issuer: str, leeway: float = 5.0) -> None:
        self._key = serialization.load_pem_public_key(public_key_pem.encode())
        self.issuer = issuer
        self.leeway = leeway

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a valid token; checks signature, algorithm, exp, nbf, iss and sub."""
        try:
            return jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "nbf", "iss", "sub"]},
            )
        except jwt.PyJWTError as error:
            raise TokenError(str(error)) from None
