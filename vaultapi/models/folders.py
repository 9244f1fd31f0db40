"""The folders table: wire shape, finders and writes, always scoped to the owner.

The triggers publish each write: SyncFolderCreate, SyncFolderUpdate or SyncFolderDelete for
one folder, a SyncVault for several in one statement.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from vaultapi.database import encode_in_batches
from vaultapi.dates import iso
from vaultapi.errors import NotFound

__all__ = ["create", "create_many", "delete", "find_by_id_and_user", "find_by_user", "folder_json", "rename", "require"]

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


async def create(conn: asyncpg.Connection, user_id: uuid.UUID, name: str) -> asyncpg.Record:
    """SyncFolderCreate."""
    return await conn.fetchrow("INSERT INTO folders (user_id, name) VALUES ($1, $2) RETURNING *", user_id, name)


async def create_many(conn: asyncpg.Connection, user_id: uuid.UUID, names: dict[uuid.UUID, str]) -> None:
    """Folders with the ids given (folder id -> name), one statement per batch of about a
    megabyte: a SyncVault, or one folder's SyncFolderCreate unless the transaction is a bulk change."""
    batches = await encode_in_batches({"id": str(folder_id), "name": name} for folder_id, name in names.items())
    for batch in batches:
        await conn.execute(
            "INSERT INTO folders (id, user_id, name)"
            " SELECT id, $1, name FROM jsonb_to_recordset($2::jsonb) AS f(id uuid, name text)",
            user_id, batch)


async def rename(conn: asyncpg.Connection, folder_id: uuid.UUID, user_id: uuid.UUID, name: str) -> asyncpg.Record:
    """SyncFolderUpdate."""
    row = await conn.fetchrow(
        "UPDATE folders SET name = $3 WHERE id = $1 AND user_id = $2 RETURNING *", folder_id, user_id, name)
    if row is None:
        raise NotFound("Folder")
    return row


async def delete(conn: asyncpg.Connection, folder_id: uuid.UUID, user_id: uuid.UUID) -> None:
    """SyncFolderDelete; the trigger then takes the folder's items out of it, which publishes
    that item's SyncCipherUpdate, or one SyncCiphers for several."""
    deleted = await conn.fetchval("DELETE FROM folders WHERE id = $1 AND user_id = $2 RETURNING id", folder_id, user_id)
    if deleted is None:
        raise NotFound("Folder")
