"""Access tokens: RS256 JWTs whose header names the key that signed them (``kid``).

Pure: keys, signing and checking, no database. Where the keys live, and how a running process
follows a rotation, are core.keystore and core.keyring.

Several keys may verify at once (the signing key and, for a while after a rotation, the ones
before it); a token names its key, and one naming no key, or a key not known, is refused. The
one exception is a token older than key ids themselves: the key that signed it is marked with the
moment it got its id (``no_kid_before``), and verifies kid-less tokens issued before then.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = [
    "ALGORITHM",
    "LEEWAY",
    "SigningKey",
    "SigningKeyError",
    "TokenError",
    "TokenIssuer",
    "TokenVerifier",
    "UnknownKeyId",
    "VerifiedTokens",
    "VerifyingKey",
    "is_encrypted",
    "key_id",
]

ALGORITHM = "RS256"
#: Seconds of clock difference between machines that exp and nbf forgive.
LEEWAY = 5.0

_ENCRYPTED_PEM = "-----BEGIN ENCRYPTED PRIVATE KEY-----"


class TokenError(Exception):
    """Raised when an access token is missing, malformed, forged, expired or not yet valid."""


class UnknownKeyId(TokenError):
    """Raised when a token names a key the verifier does not know (yet: a reload may find it)."""

    def __init__(self, kid: str) -> None:
        super().__init__(kid)
        self.kid = kid

    def __str__(self) -> str:
        return f"no key {self.kid!r}"


class SigningKeyError(Exception):
    """Raised when the signing key cannot be used: there is none, or it is encrypted and the
    passphrase is missing or wrong. The message is for the operator."""


def key_id(public_key_pem: str) -> str:
    """A key's id: the first 16 hex digits of the SHA-256 of its public key's PEM text.

    Migration 0004 computes the same in SQL for the key that predates ids."""
    return hashlib.sha256(public_key_pem.encode()).hexdigest()[:16]


def is_encrypted(private_key_pem: str) -> bool:
    return private_key_pem.lstrip().startswith(_ENCRYPTED_PEM)


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: rsa.RSAPrivateKey = field(repr=False)

    @classmethod
    def generate(cls) -> SigningKey:
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return cls(key_id(_public_pem(private_key)), private_key)

    @classmethod
    def from_pem(cls, kid: str, private_key_pem: str, passphrase: str | None) -> SigningKey:
        """The key from its stored PEM; the passphrase is needed only when the PEM is encrypted."""
        password = None
        if is_encrypted(private_key_pem):
            if not passphrase:
                raise SigningKeyError(
                    "the token signing key is encrypted: set SIGNING_KEY_PASSPHRASE or SIGNING_KEY_PASSPHRASE_FILE")
            password = passphrase.encode()
        try:
            private_key = serialization.load_pem_private_key(private_key_pem.encode(), password=password)
        except ValueError:
            raise SigningKeyError("SIGNING_KEY_PASSPHRASE does not decrypt the token signing key") from None
        if not isinstance(private_key, rsa.RSAPrivateKey):
            raise SigningKeyError(f"the token signing key {kid} is no RSA key")
        return cls(kid, private_key)

    def private_pem(self, passphrase: str | None = None) -> str:
        """PKCS#8 PEM, encrypted with the passphrase when there is one."""
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(passphrase.encode()) if passphrase
            else serialization.NoEncryption())
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption).decode()

    @property
    def public_pem(self) -> str:
        return _public_pem(self.private_key)

    def verifying_key(self, retires_at: float | None = None, no_kid_before: float | None = None) -> VerifyingKey:
        return VerifyingKey(self.kid, self.private_key.public_key(), retires_at, no_kid_before)


@dataclass(frozen=True)
class VerifyingKey:
    kid: str
    public_key: rsa.RSAPublicKey = field(repr=False)
    #: Epoch seconds from which it verifies nothing; None while it is the signing key.
    retires_at: float | None = None
    #: Epoch seconds before which the tokens it signed carried no kid (they predate key ids).
    no_kid_before: float | None = None

    @classmethod
    def from_pem(cls, kid: str, public_key_pem: str, retires_at: float | None = None,
                 no_kid_before: float | None = None) -> VerifyingKey:
        public_key = serialization.load_pem_public_key(public_key_pem.encode())
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise ValueError(f"the public key {kid} is no RSA key")
        return cls(kid, public_key, retires_at, no_kid_before)

    def retired(self, now: float) -> bool:
        return self.retires_at is not None and now >= self.retires_at


class TokenIssuer:
    """Signs tokens with ``key``; a rotation assigns a new key and the issuer follows."""

    def __init__(self, key: SigningKey, issuer: str, lifetime: int) -> None:
        self.key = key
        self.issuer = issuer
        self.lifetime = lifetime

    def issue(self, claims: Mapping[str, Any]) -> str:
        """Sign claims; nbf, exp and iss are added here, the kid goes in the header."""
        now = int(time.time())
        body = {"nbf": now, "exp": now + self.lifetime, "iss": self.issuer, **claims}
        return jwt.encode(body, self.key.private_key, algorithm=ALGORITHM, headers={"kid": self.key.kid})


class VerifiedTokens:
    """Tokens whose signature checked out, and their claims, until they expire: a client that
    connects again with the same token (a reconnect, a reload) skips parsing it and the RSA check,
    which are most of a token check's CPU.

    Keyed by a BLAKE2b digest of the whole token, so only the very same token hits. Bounded in
    bytes: each entry is charged ``ENTRY_BYTES`` (the digest, and the claims of an access token,
    about a dozen short fields), the least recently used going first once ``max_bytes`` is reached.
    What does not depend on the token alone is checked at every hit all the same (TokenVerifier):
    its key still known and not retired, its exp not passed.
    """

    ENTRY_BYTES = 1024

    def __init__(self, max_bytes: int = 4 << 20) -> None:
        self.max_entries = max(1, max_bytes // self.ENTRY_BYTES)
        self._entries: dict[bytes, tuple[dict[str, Any], object, float]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def digest(token: str) -> bytes:
        return hashlib.blake2b(token.encode(), digest_size=32).digest()

    def get(self, digest: bytes, now: float) -> tuple[dict[str, Any], object] | None:
        """The claims and kid of a verified token, unless it expired (then it is dropped)."""
        entry = self._entries.pop(digest, None)
        if entry is None or entry[2] <= now:
            return None
        self._entries[digest] = entry  # the most recently used, last
        return entry[0], entry[1]

    def put(self, digest: bytes, claims: dict[str, Any], kid: object, until: float) -> None:
        while len(self._entries) >= self.max_entries:
            del self._entries[next(iter(self._entries))]
        self._entries[digest] = (claims, kid, until)


class TokenVerifier:
    """Checks tokens against ``keys`` (kid to key), read at every check so its owner may update it.

    ``reload(kid)`` is awaited by :meth:`verify` when a token names an unknown key, and says
    whether that key is known now. ``verified`` remembers tokens that checked out (see
    VerifiedTokens); None: every check parses and verifies the token.
    """

    def __init__(
        self,
        keys: Mapping[str, VerifyingKey],
        issuer: str,
        leeway: float = LEEWAY,
        reload: Callable[[str], Awaitable[bool]] | None = None,
        verified: VerifiedTokens | None = None,
    ) -> None:
        self.keys = keys
        self.issuer = issuer
        self.leeway = leeway
        self._reload = reload
        self._verified = verified

    async def verify(self, token: str) -> dict[str, Any]:
        """The claims of a valid token; an unknown kid is given one reload to become known."""
        try:
            return self.check(token)
        except UnknownKeyId as unknown:
            if self._reload is None or not await self._reload(unknown.kid):
                raise
        return self.check(token)

    def check(self, token: str) -> dict[str, Any]:
        """The claims of a valid token; checks kid, signature, algorithm, exp, nbf, iss and sub."""
        now = time.time()
        digest = None
        if self._verified is not None:
            digest = self._verified.digest(token)
            known = self._verified.get(digest, now)
            if known is not None:
                claims, kid = known
                self._key_in_use(kid, claims, now)
                return dict(claims)
        try:
            kid = _kid_of(token)
        except jwt.PyJWTError as error:
            raise TokenError(str(error)) from None
        key = self._key_for(kid)
        if key.retired(now):
            raise TokenError(f"key {key.kid!r} is retired")
        try:
            claims = jwt.decode(
                token,
                key.public_key,
                algorithms=[ALGORITHM],
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "nbf", "iss", "sub"]},
            )
        except jwt.PyJWTError as error:
            raise TokenError(str(error)) from None
        if kid is None and claims["nbf"] >= (key.no_kid_before or 0):  # PyJWT checked nbf is a number
            raise TokenError("token names no key (only tokens from before key ids may)")
        if digest is not None and self._verified is not None:
            # PyJWT checked exp is a number; past it (and the leeway) the token is checked anew, and refused
            self._verified.put(digest, dict(claims), kid, float(claims["exp"]) + self.leeway)
        return claims

    def _key_in_use(self, kid: object, claims: Mapping[str, Any], now: float) -> None:
        """For a token verified before: its key is still known and not retired."""
        key = self._key_for(kid)
        if key.retired(now):
            raise TokenError(f"key {key.kid!r} is retired")
        if kid is None and claims["nbf"] >= (key.no_kid_before or 0):
            raise TokenError("token names no key (only tokens from before key ids may)")

    def _key_for(self, kid: object) -> VerifyingKey:
        if kid is None:
            legacy = next((key for key in self.keys.values() if key.no_kid_before is not None), None)
            if legacy is None:
                raise TokenError("token names no key")
            return legacy
        if not isinstance(kid, str) or not kid:
            raise TokenError("token's kid is no key id")
        key = self.keys.get(kid)
        if key is None:
            raise UnknownKeyId(kid)
        return key


def _kid_of(token: str) -> object:
    """The kid in the token's header, to pick the key with; PyJWT's decode then checks the whole
    token, this header too. Read here without PyJWT's parse (it checks the base64 alphabet
    character by character, of every part, and decode does all of that again): a header that does
    not read here is PyJWT's to read, or to refuse with its own reason."""
    header, dot, _ = token.partition(".")
    try:
        if not dot or len(header) > _MAX_HEADER:
            raise ValueError("not a header to read here")
        parsed = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
        if isinstance(parsed, dict):
            return parsed.get("kid")
    except (ValueError, binascii.Error):  # JSON and UTF-8 errors are ValueErrors
        pass  # not ours to judge: PyJWT's own parse below answers it
    return jwt.get_unverified_header(token).get("kid")


#: An access token's header is {"alg", "typ", "kid"}: tens of bytes.
_MAX_HEADER = 1024


def _public_pem(private_key: rsa.RSAPrivateKey) -> str:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
