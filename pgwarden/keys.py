"""`pgwarden keys`: the token signing keys, listed and rotated.

Run these with the API's settings (DATABASE_URL, ACCESS_TOKEN_LIFETIME and the passphrase, if
any): the grace an old key gets follows the token lifetime, and a new key is encrypted with the
passphrase as the API will open it.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import asyncpg

from core.config import Config
from core.keystore import StoredKey, list_keys, rotate, signing_kid

__all__ = ["list_command", "rotate_command"]


def list_command(config: Config) -> int:
    from core.database import opened

    with opened(config) as url:
        print(_table(asyncio.run(_list(url))))
    return 0


def rotate_command(config: Config, *, retire_now: bool) -> int:
    from core.database import opened
    from core.keyring import REFRESH_INTERVAL, retirement_grace
    from vaultapi.app import REGISTRATION_TOKEN_LIFETIME

    grace = timedelta(0) if retire_now else retirement_grace(
        max(config.access_token_lifetime, REGISTRATION_TOKEN_LIFETIME))
    with opened(config) as url:
        old, new, keys = asyncio.run(_rotate(url, grace, config.signing_key_secret()))
    print(f"signing with key {new} now (every API replica within {REFRESH_INTERVAL:.0f} s);"
          f" {old or 'no key'} before it {'is retired' if retire_now else 'verifies what it signed until it expires'}")
    print(_table(keys))
    return 0


async def _list(url: str) -> list[StoredKey]:
    conn = await asyncpg.connect(url)
    try:
        return await list_keys(conn)
    finally:
        await conn.close()


async def _rotate(url: str, grace: timedelta, passphrase: str | None) -> tuple[str | None, str, list[StoredKey]]:
    conn = await asyncpg.connect(url)
    try:
        old = await signing_kid(conn)
        new = await rotate(conn, grace, passphrase)
        return old, new, await list_keys(conn)
    finally:
        await conn.close()


def _table(keys: list[StoredKey]) -> str:
    rows = [("kid", "created", "state")]
    for key in keys:
        if key.state == "signing":
            state = "signing" + (" (encrypted)" if key.encrypted else " (not encrypted)")
        elif key.state == "verifying":
            state = f"verifying until {_when(key.retires_at)}"
        else:
            state = f"retired {_when(key.retires_at)}"
        rows.append((key.kid, _when(key.created_at), state))
    width = [max(len(row[i]) for row in rows) for i in range(2)]
    return "\n".join(f"{kid:<{width[0]}}  {created:<{width[1]}}  {state}" for kid, created, state in rows)


def _when(moment: datetime | None) -> str:
    return "" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S %Z")
