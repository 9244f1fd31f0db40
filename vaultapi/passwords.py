"""The master password hash a client sends, hashed again before it is stored (argon2id).

Hashing is slow on purpose, so it runs in a worker thread to keep the event loop free. The
parameters are OWASP's recommended argon2id minimum (19 MiB, 2 passes, 1 lane): what arrives is
already the output of 600000 client-side PBKDF2 rounds, and a login must stay cheap enough that
a burst of them cannot starve the server. Stored hashes carry their parameters, so raising them
later needs no migration.
"""

from __future__ import annotations

import asyncio
import functools
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

__all__ = ["hash_password", "verify_password"]

_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


async def hash_password(master_password_hash: str) -> str:
    return await asyncio.to_thread(_hasher.hash, master_password_hash)


@functools.cache
def _stand_in_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe())


async def verify_password(stored: str | None, master_password_hash: str) -> bool:
    """Whether the hash matches; for an unknown account (stored None) the same work is done
    against a stand-in, so the time taken does not tell which emails have accounts."""
    def check() -> bool:
        try:
            return _hasher.verify(stored or _stand_in_hash(), master_password_hash) and stored is not None
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(check)
