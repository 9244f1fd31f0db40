"""The client side of Bitwarden's key scheme, for tools and tests that act as a client.

Only what a client does: derive the master key from the master password, prove it with the
master password hash, wrap a random user key and an RSA key pair, encrypt or decrypt EncStrings
of type 2 (AES-256-CBC with HMAC-SHA256), and share an organization key: wrapped to a member's
public key as an EncString of type 4 (RSA-OAEP with SHA-1). The server itself never sees any of
these keys; it stores what the client sends.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import padding as rsa_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = [
    "DEFAULT_ITERATIONS",
    "AccountKeys",
    "CryptoError",
    "OrganizationKeys",
    "SymmetricKey",
    "make_account_keys",
    "make_key_pair",
    "make_organization_keys",
    "master_key",
    "master_password_hash",
    "salt_of",
    "unlock_user_key",
    "unwrap_key",
    "wrap_key",
]

DEFAULT_ITERATIONS = 600_000
_ENC_STRING_TYPE = "2"
#: Rsa2048_OaepSha1_B64: how a key is wrapped to a public key
_RSA_ENC_STRING_TYPE = "4"
_OAEP = rsa_padding.OAEP(mgf=rsa_padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None)


class CryptoError(ValueError):
    """Raised when an EncString is malformed or fails its MAC check (wrong key)."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def salt_of(email: str) -> bytes:
    """The KDF salt: the account email, trimmed and lowercased."""
    return email.strip().lower().encode()


def master_key(password: str, email: str, iterations: int = DEFAULT_ITERATIONS) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt_of(email), iterations, 32)


def master_password_hash(key: bytes, password: str) -> str:
    """What a client sends as its password: one more PBKDF2 round over the master key."""
    return _b64(hashlib.pbkdf2_hmac("sha256", key, password.encode(), 1, 32))


@dataclass(frozen=True)
class SymmetricKey:
    """An AES-256 encryption key with its HMAC-SHA256 key (64 bytes in all)."""

    enc: bytes
    mac: bytes

    @classmethod
    def generate(cls) -> SymmetricKey:
        return cls.from_bytes(os.urandom(64))

    @classmethod
    def from_bytes(cls, raw: bytes) -> SymmetricKey:
        if len(raw) != 64:
            raise CryptoError(f"a symmetric key has 64 bytes, not {len(raw)}")
        return cls(raw[:32], raw[32:])

    @classmethod
    def stretch(cls, master: bytes) -> SymmetricKey:
        """HKDF-Expand of the master key into an encryption key and a MAC key."""
        enc = hmac.new(master, b"enc\x01", hashlib.sha256).digest()
        mac = hmac.new(master, b"mac\x01", hashlib.sha256).digest()
        return cls(enc, mac)

    def to_bytes(self) -> bytes:
        return self.enc + self.mac

    def encrypt(self, plaintext: bytes) -> str:
        iv = os.urandom(16)
        padder = padding.PKCS7(128).padder()
        padded = padder.update(plaintext) + padder.finalize()
        encryptor = Cipher(algorithms.AES(self.enc), modes.CBC(iv)).encryptor()
        data = encryptor.update(padded) + encryptor.finalize()
        mac = hmac.new(self.mac, iv + data, hashlib.sha256).digest()
        return f"{_ENC_STRING_TYPE}.{_b64(iv)}|{_b64(data)}|{_b64(mac)}"

    def decrypt(self, enc_string: str) -> bytes:
        try:
            kind, rest = enc_string.split(".", 1)
            iv, data, mac = (base64.b64decode(part, validate=True) for part in rest.split("|"))
        except ValueError:
            raise CryptoError("not an EncString") from None
        if kind != _ENC_STRING_TYPE:
            raise CryptoError(f"EncString type {kind} is not supported")
        expected = hmac.new(self.mac, iv + data, hashlib.sha256).digest()
        if not hmac.compare_digest(expected, mac):
            raise CryptoError("MAC mismatch: wrong key or tampered data")
        decryptor = Cipher(algorithms.AES(self.enc), modes.CBC(iv)).decryptor()
        padded = decryptor.update(data) + decryptor.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        return unpadder.update(padded) + unpadder.finalize()

    def encrypt_text(self, text: str) -> str:
        return self.encrypt(text.encode())

    def decrypt_text(self, enc_string: str) -> str:
        return self.decrypt(enc_string).decode()


@dataclass(frozen=True)
class AccountKeys:
    """Everything a client derives and sends when it creates an account."""

    email: str
    iterations: int
    master_password_hash: str
    user_key: SymmetricKey
    key: str  # the user key wrapped under the stretched master key
    public_key: str  # base64 DER SubjectPublicKeyInfo
    encrypted_private_key: str  # PKCS#8 DER wrapped under the user key


def _key_pair() -> tuple[bytes, bytes]:
    """A new RSA-2048 pair: the public key as DER SubjectPublicKeyInfo, the private as PKCS#8 DER."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    private_der = private.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return public_der, private_der


def make_key_pair() -> tuple[str, bytes]:
    """A one-off RSA-2048 pair, as a device asking to log in with another makes: the public key
    as base64 SubjectPublicKeyInfo (what it sends), the private one as PKCS#8 DER (what it keeps)."""
    public_der, private_der = _key_pair()
    return _b64(public_der), private_der


def make_account_keys(email: str, password: str, iterations: int = DEFAULT_ITERATIONS) -> AccountKeys:
    master = master_key(password, email, iterations)
    user_key = SymmetricKey.generate()
    public_der, private_der = _key_pair()
    return AccountKeys(
        email=email.strip().lower(),
        iterations=iterations,
        master_password_hash=master_password_hash(master, password),
        user_key=user_key,
        key=SymmetricKey.stretch(master).encrypt(user_key.to_bytes()),
        public_key=_b64(public_der),
        encrypted_private_key=user_key.encrypt(private_der),
    )


def unlock_user_key(password: str, email: str, iterations: int, key: str) -> SymmetricKey:
    """The user key, unwrapped from the account's `key` with the master password."""
    stretched = SymmetricKey.stretch(master_key(password, email, iterations))
    return SymmetricKey.from_bytes(stretched.decrypt(key))


def wrap_key(public_key: str, key: SymmetricKey) -> str:
    """The key encrypted to a public key (base64 DER), as an EncString of type 4."""
    public = serialization.load_der_public_key(base64.b64decode(public_key))
    if not isinstance(public, rsa.RSAPublicKey):
        raise CryptoError("not an RSA public key")
    return f"{_RSA_ENC_STRING_TYPE}.{_b64(public.encrypt(key.to_bytes(), _OAEP))}"


def unwrap_key(private_key_der: bytes, enc_string: str) -> SymmetricKey:
    """A key wrapped by :func:`wrap_key`, opened with the matching private key (PKCS#8 DER)."""
    kind, _, data = enc_string.partition(".")
    if kind != _RSA_ENC_STRING_TYPE:
        raise CryptoError(f"EncString type {kind} is not a wrapped key")
    private = serialization.load_der_private_key(private_key_der, password=None)
    if not isinstance(private, rsa.RSAPrivateKey):
        raise CryptoError("not an RSA private key")
    try:
        return SymmetricKey.from_bytes(private.decrypt(base64.b64decode(data, validate=True), _OAEP))
    except ValueError:
        raise CryptoError("cannot unwrap the key: wrong private key or tampered data") from None


@dataclass(frozen=True)
class OrganizationKeys:
    """What a client makes when it creates an organization."""

    key: SymmetricKey  # the organization key
    public_key: str  # base64 DER SubjectPublicKeyInfo
    encrypted_private_key: str  # PKCS#8 DER wrapped under the organization key

    def wrapped_for(self, public_key: str) -> str:
        """The organization key for a member holding this public key (what confirming sends)."""
        return wrap_key(public_key, self.key)


def make_organization_keys() -> OrganizationKeys:
    key = SymmetricKey.generate()
    public_der, private_der = _key_pair()
    return OrganizationKeys(key=key, public_key=_b64(public_der), encrypted_private_key=key.encrypt(private_der))
