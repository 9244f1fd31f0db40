"""`pgwarden user create`: an account made exactly as a client would make it.

The keys are derived here with the client-side scheme (vaultapi.clientcrypto), then stored by
the same registration path the API uses, so the account logs in from any official client.
The master password never comes from the command line, where every user of the machine can
read it (ps, /proc): it is asked twice on the terminal, or read from standard input with
--password-stdin (a pipe, a file, a secrets manager).
"""

from __future__ import annotations

import asyncio
import getpass
import logging
from collections.abc import Callable
from typing import TextIO

import asyncpg

from core.config import Config
from vaultapi.clientcrypto import DEFAULT_ITERATIONS, make_account_keys
from vaultapi.errors import ApiError
from vaultapi.registration import Registration, register

__all__ = ["PasswordInputError", "create_user", "create_user_command", "read_master_password"]

log = logging.getLogger(__name__)


class PasswordInputError(ValueError):
    """Raised when no usable master password can be read; the message is for the operator."""


def read_master_password(
    stdin: TextIO | None, *, from_stdin: bool, ask: Callable[[str], str] = getpass.getpass
) -> str:
    """The master password: from standard input when asked to, else typed twice on the terminal."""
    if from_stdin:
        # one line; only its line end is dropped, spaces may belong to the password
        text = stdin.read() if stdin is not None else ""
        password = text.removesuffix("\n").removesuffix("\r")
        if "\n" in password or "\r" in password:
            raise PasswordInputError("standard input holds more than one line; give the password alone")
    elif stdin is None or not stdin.isatty():
        raise PasswordInputError("no terminal to ask for the master password on: pipe it in with --password-stdin")
    else:
        password = ask("Master password: ")
        if password and ask("Master password again: ") != password:
            raise PasswordInputError("the two passwords do not match")
    if not password:
        raise PasswordInputError("the master password must not be empty")
    return password


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

    with opened(config) as database_url:
        try:
            user_id = asyncio.run(create_user(database_url, email=email, password=password, name=name))
        except ApiError as error:
            print(f"cannot create {email}: {error.message}")
            return 1
    print(f"created {email.strip().lower()} ({user_id})")
    return 0
