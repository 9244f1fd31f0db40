"""KDF settings for emails without an account, so that prelogin does not tell them apart.

An unknown email gets the defaults of a client creating an account, PBKDF2-SHA256 or Argon2id,
picked by a keyed hash of the email: the same email always gets the same answer (a real
account's settings do not change from one request to the next either), and without the server's
secret nobody can tell which one an unknown email will get. The share of Argon2id stand-ins is
fixed rather than taken from this server's accounts: a share that followed them would change
with every new account and flip the answers for some unknown emails.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

__all__ = ["ARGON2ID_DEFAULTS", "ARGON2ID_SHARE", "PBKDF2_DEFAULTS", "stand_in_kdf"]

#: what the clients create accounts with (kdfType 0 PBKDF2-SHA256, 1 Argon2id, memory in MiB)
PBKDF2_DEFAULTS: dict[str, Any] = {"kdfType": 0, "iterations": 600_000, "memory": None, "parallelism": None}
ARGON2ID_DEFAULTS: dict[str, Any] = {"kdfType": 1, "iterations": 3, "memory": 64, "parallelism": 4}
#: out of 256: one unknown email in eight looks like an account that chose Argon2id
ARGON2ID_SHARE = 32


def stand_in_kdf(secret: bytes, email: str) -> dict[str, Any]:
    digest = hmac.new(secret, email.strip().lower().encode(), hashlib.sha256).digest()
    return dict(ARGON2ID_DEFAULTS if digest[0] < ARGON2ID_SHARE else PBKDF2_DEFAULTS)
