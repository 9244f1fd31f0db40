"""The folders table: wire shape and finders, always scoped to the owner."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from vaultapi.dates import iso
from vaultapi.errors import NotFound

__all__ = ["find_by_id_and_user", "find_by_user", "folder_json", "require"]

Conn = asyncpg.Connection | asyncpg.Pool

# A write that places items in a folder locks the folder (KEY SHARE) until it commits: a delete
# of that folder then waits, and its trigger sees and clears the new placement. Renames do not wait.
_KEEP = " FOR KEY SHARE"


def folder_json(row: asyncpg.Record) -> dict[str, Any]:
    return {"id": str(row["id"]), "name": row["name"], "revisionDate": iso(row["revision_date"]), "object": "folder"}


async def find_by_user(conn: Conn, user_id: uuid.UUID, *, keep: bool = False) -> list[asyncpg.Record]:
    query = "SELECT * FROM folders WHERE user_id = $1 ORDER BY created_at, id"
    return await conn.fetch(query + (_KEEP if keep else ""), user_id)


async def find_by_id_and_user(
    conn: Conn, folder_id: uuid.UUID, user_id: uuid.UUID, *, keep: bool = False
) -> asyncpg.Record | None:
    query = "SELECT * FROM folders WHERE id = $1 AND user_id = $2"
    return await conn.fetchrow(query + (_KEEP if keep else ""), folder_id, user_id)


async def require(conn: Conn, folder_id: uuid.UUID, user_id: uuid.UUID) -> asyncpg.Record:
    """The caller's folder; another user's folder is as unknown as a missing one."""
    row = await find_by_id_and_user(conn, folder_id, user_id)
    if row is None:
        raise NotFound("Folder")
    return row
