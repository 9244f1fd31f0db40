"""`pgwarden user list|disable|enable|delete|logout|reset-password`: accounts, for the operator.

Each action is the API's own (vaultapi.models.users) in one transaction of vaultapi.publish, so
a session that ends is told at once: the LogOut event reaches the user's connected clients
through the hub, and the security stamp that changed refuses their tokens everywhere.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime

import asyncpg

from core.config import Config
from vaultapi import publish
from vaultapi.errors import ApiError
from vaultapi.models import users

__all__ = ["ACTIONS", "action_command", "list_command", "reset_password_command"]

Action = Callable[[asyncpg.Connection, uuid.UUID], Awaitable[None]]

#: name: (what it does, for --help; what it did, for the operator)
ACTIONS: dict[str, tuple[Action, str, str]] = {
    "disable": (users.disable, "refuse logins and end every session; the vault is kept", "disabled"),
    "enable": (users.enable, "allow logins again", "enabled"),
    "logout": (users.reset_security_stamp, "end every session on every device (log in again)", "logged out"),
    "delete": (users.delete_account, "delete the account and its vault (needs --yes)", "deleted"),
}


class UserNotFound(LookupError):
    pass


def list_command(config: Config) -> int:
    from core.database import opened

    with opened(config) as url:
        rows = asyncio.run(_list(url))
    print(_table(rows))
    return 0


def action_command(config: Config, action: str, email: str) -> int:
    from core.database import opened

    run, _, done = ACTIONS[action]
    with opened(config) as url:
        if not _acted(url, action, email, run):
            return 1
    print(f"{email.strip().lower()}: {done}")
    return 0


def reset_password_command(config: Config, email: str, password: str) -> int:
    """A new master password; what the old one encrypted is deleted (see users.replace_keys_forgetting_vault)."""
    from core.database import opened
    from vaultapi.clientcrypto import DEFAULT_ITERATIONS, make_account_keys
    from vaultapi.passwords import hash_password

    keys = make_account_keys(email, password, DEFAULT_ITERATIONS)
    password_hash = asyncio.run(hash_password(keys.master_password_hash))

    async def replace(conn: asyncpg.Connection, user_id: uuid.UUID) -> None:
        await users.replace_keys_forgetting_vault(conn, user_id, password_hash, keys.key, keys.public_key,
                                                  keys.encrypted_private_key, keys.iterations)

    with opened(config) as url:
        if not _acted(url, "reset-password", email, replace):
            return 1
    print(f"{keys.email}: new master password set; personal items and folders deleted; every session ended;"
          " organizations must confirm this member again")
    return 0


def _acted(url: str, command: str, email: str, action: Action) -> bool:
    """Run the action on the account; False (the reason said) when there is none or it is refused."""
    try:
        asyncio.run(_act(url, email, action))
    except UserNotFound:
        print(f"pgwarden user {command}: no account {email}", file=sys.stderr)
        return False
    except ApiError as error:
        print(f"pgwarden user {command}: cannot {command} {email}: {error.message}", file=sys.stderr)
        return False
    return True


async def _act(url: str, email: str, action: Action) -> None:
    pool = await asyncpg.create_pool(url, min_size=1, max_size=1)
    try:
        # the operator is no device of the user's: every device hears the event
        async with publish.write(pool, None) as conn:
            user = await users.find_by_email(conn, email)
            if user is None:
                raise UserNotFound(email)
            await action(conn, user["id"])
    finally:
        await pool.close()


async def _list(url: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(
            """
            SELECT u.email, u.created_at, u.disabled_at,
                   (SELECT max(d.updated_at) FROM devices d WHERE d.user_id = u.id) AS last_seen,
                   (SELECT count(*) FROM devices d WHERE d.user_id = u.id AND d.refresh_token_hash IS NOT NULL)
                       AS sessions,
                   (SELECT count(*) FROM ciphers c WHERE c.user_id = u.id) AS items
              FROM users u ORDER BY lower(u.email)
            """)
    finally:
        await conn.close()


def _table(rows: list[asyncpg.Record]) -> str:
    def day(moment: datetime | None) -> str:
        return moment.strftime("%Y-%m-%d %H:%M") if moment else "-"

    lines = [("EMAIL", "STATE", "CREATED", "LAST SEEN", "SESSIONS", "ITEMS")]
    lines += [(row["email"], "disabled" if row["disabled_at"] else "active", day(row["created_at"]),
               day(row["last_seen"]), str(row["sessions"]), str(row["items"])) for row in rows]
    widths = [max(len(line[column]) for line in lines) for column in range(len(lines[0]))]
    text = "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines)
    return text + ("" if rows else "\n(no accounts)")
