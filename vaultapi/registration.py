"""Creating an account from what a client sends: the one path for every way in.

The legacy register route, register/finish and `pgwarden user create` all end here, so an
account made by an operator is indistinguishable from one a client registered, and each takes
the organization invitations waiting for its address.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg

from vaultapi.body import is_email
from vaultapi.errors import ApiError
from vaultapi.models import memberships
from vaultapi.passwords import hash_password

__all__ = ["KDF_ARGON2ID", "KDF_PBKDF2", "Registration", "register"]

KDF_PBKDF2 = 0
KDF_ARGON2ID = 1


@dataclass(frozen=True)
class Registration:
    email: str
    master_password_hash: str
    key: str
    public_key: str | None
    encrypted_private_key: str | None
    name: str | None = None
    hint: str | None = None
    kdf_type: int = KDF_PBKDF2
    kdf_iterations: int = 600_000
    kdf_memory: int | None = None
    kdf_parallelism: int | None = None

    def validate(self) -> None:
        if not is_email(self.email.strip()):
            raise ApiError("The Email field is not a valid e-mail address.", field="email")
        if self.kdf_type == KDF_PBKDF2:
            # the clients refuse fewer than 5000; accounts get at least what Vaultwarden demands
            if not 100_000 <= self.kdf_iterations <= 2_000_000:
                raise ApiError("PBKDF2 iterations must be between 100000 and 2000000.", field="kdfIterations")
        elif self.kdf_type == KDF_ARGON2ID:
            if not 2 <= self.kdf_iterations <= 10:
                raise ApiError("Argon2 iterations must be between 2 and 10.", field="kdfIterations")
            if self.kdf_memory is None or not 15 <= self.kdf_memory <= 1024:
                raise ApiError("Argon2 memory must be between 15 and 1024 MiB.", field="kdfMemory")
            if self.kdf_parallelism is None or not 1 <= self.kdf_parallelism <= 16:
                raise ApiError("Argon2 parallelism must be between 1 and 16.", field="kdfParallelism")
        else:
            raise ApiError("Unknown KDF type.", field="kdf")
        if (self.public_key is None) != (self.encrypted_private_key is None):
            raise ApiError("A key pair needs both its public and its private key.", field="keys")


async def register(db: asyncpg.Pool | asyncpg.Connection, account: Registration) -> uuid.UUID:
    """Insert the account; a taken email is a 400, as the clients expect. The account takes the
    organization invitations of its address (they become Accepted).

    The slow hash comes first, so no connection is held while it runs."""
    account.validate()
    password_hash = await hash_password(account.master_password_hash)
    memory, parallelism = (
        (account.kdf_memory, account.kdf_parallelism) if account.kdf_type == KDF_ARGON2ID else (None, None)
    )
    email = account.email.strip().lower()
    async with _connection(db) as conn, conn.transaction():
        await memberships.lock_emails(conn, [email])
        try:
            user_id = await conn.fetchval(
                """
                INSERT INTO users (email, name, password_hash, password_hint, kdf_type, kdf_iterations,
                                   kdf_memory, kdf_parallelism, key, public_key, private_key)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id
                """,
                email, account.name, password_hash, account.hint,
                account.kdf_type, account.kdf_iterations, memory, parallelism,
                account.key, account.public_key, account.encrypted_private_key,
            )
        except asyncpg.UniqueViolationError:
            raise ApiError("Registration not allowed or user already exists.", field="email") from None
        await memberships.accept_invitations(conn, user_id, email)
    return user_id


@asynccontextmanager
async def _connection(db: asyncpg.Pool | asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            yield conn
    else:
        yield db
