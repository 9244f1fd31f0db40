"""`pgwarden user create`: an account made exactly as a client would make it.

The keys are derived here with the client-side scheme (vaultapi.clientcrypto), then stored by
the same registration path the API uses, so the account logs in from any official client.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from core.config import Config
from vaultapi.clientcrypto import DEFAULT_ITERATIONS, make_account_keys
from vaultapi.errors import ApiError
from vaultapi.registration import Registration, register

__all__ = ["create_user", "create_user_command"]

log = logging.getLogger(__name__)


async def create_user(database_url: str, *, email: str, password: str, name: str | None = None) -> str:
    """Create the account and return its id; raises ApiError when it cannot be created."""
    keys = make_account_keys(email, password, DEFAULT_ITERATIONS)
    conn = await asyncpg.connect(database_url)
    try:
        user_id = await register(conn, Registration(
            email=keys.email,
            name=name,
            master_password_hash=keys.master_password_hash,
            key=keys.key,
            public_key=keys.public_key,
            encrypted_private_key=keys.encrypted_private_key,
            kdf_iterations=keys.iterations,
        ))
    finally:
        await conn.close()
    return str(user_id)


def create_user_command(config: Config, *, email: str, password: str, name: str | None) -> int:
    from core.database import opened

    if not password:
        print("the master password must not be empty")
        return 2
    with opened(config) as database_url:
        try:
            user_id = asyncio.run(create_user(database_url, email=email, password=password, name=name))
        except ApiError as error:
            print(f"cannot create {email}: {error.message}")
            return 1
    print(f"created {email.strip().lower()} ({user_id})")
    return 0
