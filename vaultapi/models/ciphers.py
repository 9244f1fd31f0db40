"""The ciphers table: what a client may send, its wire shape, owner-scoped finders and writes.

The encrypted fields are the client's business: they are kept as the JSON the client sent
(column data) and handed back unchanged. Placement (folder, favorite) is per user.

Each write is one statement, so the triggers publish one event for it: a statement that
touches one item publishes that item's event (SyncCipherCreate, SyncCipherUpdate,
SyncLoginDelete), one that touches several publishes a single SyncCiphers.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from db.events import PushType
from vaultapi import publish
from vaultapi.body import Body
from vaultapi.dates import iso, parse_iso
from vaultapi.errors import ApiError, NotFound
from vaultapi.models import folders

__all__ = [
    "CipherInput",
    "VaultImport",
    "check_folder",
    "cipher_json",
    "create",
    "delete",
    "find_by_id_and_user",
    "find_by_user",
    "import_vault",
    "move",
    "require",
    "set_deleted",
    "set_placement",
    "update",
]

Conn = asyncpg.Connection | asyncpg.Pool

#: cipher type -> the key of its type-specific object
TYPE_FIELDS = {1: "login", 2: "secureNote", 3: "card", 4: "identity", 5: "sshKey"}
_COMMON_FIELDS = {"name": str, "notes": str, "fields": list, "passwordHistory": list}


@dataclass(frozen=True)
class CipherInput:
    """A cipher as a client sends it to create or update one."""

    type: int
    data: dict[str, Any]
    key: str | None
    reprompt: int
    folder_id: uuid.UUID | None
    favorite: bool
    last_known_revision_date: datetime | None

    @classmethod
    def parse(cls, body: Body) -> CipherInput:
        cipher_type = body.int("type", required=True)
        if cipher_type not in TYPE_FIELDS:
            raise ApiError(f"Unknown cipher type {cipher_type}.", field="type")
        if body.get("organizationId") is not None:
            raise ApiError("Organizations are not supported by this server.", field="organizationId")
        body.str("name", required=True)
        data: dict[str, Any] = {}
        for field, kind in _COMMON_FIELDS.items():
            value = body.get(field)
            if value is not None and not isinstance(value, kind):
                raise ApiError(f"{field} has the wrong type.", field=field)
            data[field] = value
        for field in TYPE_FIELDS.values():
            value = body.get(field)
            if value is not None and not isinstance(value, dict):
                raise ApiError(f"{field} must be an object.", field=field)
            data[field] = value
        if data[TYPE_FIELDS[cipher_type]] is None:
            raise ApiError(f"A cipher of type {cipher_type} needs {TYPE_FIELDS[cipher_type]}.",
                           field=TYPE_FIELDS[cipher_type])
        reprompt = body.int("reprompt", default=0)
        if reprompt not in (0, 1):
            raise ApiError("reprompt must be 0 or 1.", field="reprompt")
        last_known = body.str("lastKnownRevisionDate", max_length=64)
        return cls(
            type=cipher_type,
            data=data,
            key=body.str("key", max_length=10_000),
            reprompt=reprompt,
            folder_id=body.uuid("folderId"),
            favorite=body.bool("favorite"),
            last_known_revision_date=parse_iso(last_known) if last_known else None,
        )

    def check_not_stale(self, row: asyncpg.Record) -> None:
        """Refuse an edit made on an older copy than the stored one (a second of slack)."""
        known = self.last_known_revision_date
        if known is not None and (row["revision_date"] - known).total_seconds() > 1:
            raise ApiError("The client copy of this cipher is out of date. Resync the client and try again.")


@dataclass(frozen=True)
class VaultImport:
    """An import as a client sends it: items, folders, and which item goes in which folder."""

    items: list[CipherInput]
    # a folder's name is read only if the folder is new, which is known once the user's are read
    folders: list[Body]
    folder_of_item: dict[int, int]  # item index -> folder index

    @classmethod
    def parse(cls, body: Body) -> VaultImport:
        items = [CipherInput.parse(item) for item in body.objects("ciphers")]
        folder_bodies = list(body.objects("folders"))
        folder_of_item: dict[int, int] = {}
        for pair in body.objects("folderRelationships"):
            item, folder = pair.int("key", required=True), pair.int("value", required=True)
            if not (0 <= item < len(items) and 0 <= folder < len(folder_bodies)):
                raise ApiError("A folder relationship points outside the import.", field="folderRelationships")
            folder_of_item[item] = folder
        return cls(items=items, folders=folder_bodies, folder_of_item=folder_of_item)


def cipher_json(row: asyncpg.Record, user_id: uuid.UUID) -> dict[str, Any]:
    data = row["data"]
    type_data = data.get(TYPE_FIELDS.get(row["type"], ""))
    owner = str(user_id)
    return {
        "id": str(row["id"]),
        "organizationId": None,
        "folderId": row["folders"].get(owner),
        "favorite": bool(row["favorites"].get(owner, False)),
        "type": row["type"],
        **{field: data.get(field) for field in _COMMON_FIELDS},
        **{field: data.get(field) for field in TYPE_FIELDS.values()},
        # The legacy flat view, as a JSON string: the clients' SDK refuses an object here.
        "data": json.dumps({**(type_data or {}), **{field: data.get(field) for field in _COMMON_FIELDS}}),
        "key": row["key"],
        "reprompt": row["reprompt"],
        "attachments": None,
        # Without premium the clients hide an item's TOTP code unless this says the code may be
        # shown; generating codes needs nothing from the server, so every item may show them.
        "organizationUseTotp": True,
        "edit": True,
        "viewPassword": True,
        "permissions": {"delete": True, "restore": True},
        "collectionIds": [],
        "revisionDate": iso(row["revision_date"]),
        "creationDate": iso(row["creation_date"]),
        "deletedDate": iso(row["deleted_date"]),
        "archivedDate": None,
        "object": "cipherDetails",
    }


async def find_by_user(conn: Conn, user_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM ciphers WHERE user_id = $1 ORDER BY creation_date, id", user_id)


async def find_by_id_and_user(conn: Conn, cipher_id: uuid.UUID, user_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM ciphers WHERE id = $1 AND user_id = $2", cipher_id, user_id)


async def require(conn: Conn, cipher_id: uuid.UUID, user_id: uuid.UUID, *, lock: bool = False) -> asyncpg.Record:
    """The caller's cipher; another user's cipher is as unknown as a missing one."""
    query = "SELECT * FROM ciphers WHERE id = $1 AND user_id = $2" + (" FOR UPDATE" if lock else "")
    row = await conn.fetchrow(query, cipher_id, user_id)
    if row is None:
        raise NotFound("Cipher")
    return row


async def check_folder(conn: Conn, folder_id: uuid.UUID | None, user_id: uuid.UUID) -> None:
    """The folder an item is placed in is the caller's, and stays until the write commits."""
    if folder_id is not None and await folders.find_by_id_and_user(conn, folder_id, user_id, keep=True) is None:
        raise ApiError("Invalid folder.", field="folderId")


# ---- writes: call them inside publish.write, whose transaction a refusal rolls back ----------

async def create(conn: asyncpg.Connection, user_id: uuid.UUID, cipher: CipherInput) -> asyncpg.Record:
    """SyncCipherCreate."""
    await check_folder(conn, cipher.folder_id, user_id)
    return await conn.fetchrow(
        """
        INSERT INTO ciphers (user_id, type, data, key, reprompt, folders, favorites)
        VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *
        """,
        user_id, cipher.type, cipher.data, cipher.key, cipher.reprompt,
        _folder_placement(user_id, cipher.folder_id), _favorite_placement(user_id, cipher.favorite))


async def update(
    conn: asyncpg.Connection, cipher_id: uuid.UUID, user_id: uuid.UUID, cipher: CipherInput
) -> asyncpg.Record:
    """The item's content and this user's placement of it: SyncCipherUpdate.

    Refused when the client edited an older copy than the stored one."""
    cipher.check_not_stale(await require(conn, cipher_id, user_id, lock=True))
    await check_folder(conn, cipher.folder_id, user_id)
    return await conn.fetchrow(
        """
        UPDATE ciphers SET type = $2, data = $3, key = $4, reprompt = $5,
                           folders = (folders - $6::text) || $7, favorites = (favorites - $6::text) || $8
         WHERE id = $1 RETURNING *
        """,
        cipher_id, cipher.type, cipher.data, cipher.key, cipher.reprompt, str(user_id),
        _folder_placement(user_id, cipher.folder_id), _favorite_placement(user_id, cipher.favorite))


async def set_placement(
    conn: asyncpg.Connection, cipher_id: uuid.UUID, user_id: uuid.UUID, folder_id: uuid.UUID | None, favorite: bool
) -> asyncpg.Record:
    """Folder and favorite only, what a user changes without the item's key: SyncCipherUpdate."""
    await check_folder(conn, folder_id, user_id)
    row = await conn.fetchrow(
        """
        UPDATE ciphers SET folders = (folders - $3::text) || $4, favorites = (favorites - $3::text) || $5
         WHERE id = $1 AND user_id = $2 RETURNING *
        """,
        cipher_id, user_id, str(user_id), _folder_placement(user_id, folder_id), _favorite_placement(user_id, favorite))
    if row is None:
        raise NotFound("Cipher")
    return row


async def move(
    conn: asyncpg.Connection, ids: list[uuid.UUID], user_id: uuid.UUID, folder_id: uuid.UUID | None
) -> None:
    """Into the folder (none: out of any), one statement: SyncCiphers, or one item's SyncCipherUpdate."""
    await check_folder(conn, folder_id, user_id)
    _check_ids(ids)
    moved = await conn.fetch(
        """
        UPDATE ciphers SET folders = (folders - $3::text) || $4
         WHERE id = ANY($1::uuid[]) AND user_id = $2 RETURNING id
        """,
        ids, user_id, str(user_id), _folder_placement(user_id, folder_id))
    _check_all_written(moved, ids)


async def set_deleted(
    conn: asyncpg.Connection, ids: list[uuid.UUID], user_id: uuid.UUID, deleted: bool
) -> list[asyncpg.Record]:
    """Into the trash or back out, one statement: SyncCiphers, or one item's SyncCipherUpdate."""
    _check_ids(ids)
    rows = await conn.fetch(
        f"UPDATE ciphers SET deleted_date = {'now()' if deleted else 'NULL'}"
        " WHERE id = ANY($1::uuid[]) AND user_id = $2 RETURNING *",
        ids, user_id)
    _check_all_written(rows, ids)
    return rows


async def delete(conn: asyncpg.Connection, ids: list[uuid.UUID], user_id: uuid.UUID) -> None:
    """For good, one statement: SyncCiphers, or one item's SyncLoginDelete."""
    _check_ids(ids)
    deleted = await conn.fetch(
        "DELETE FROM ciphers WHERE id = ANY($1::uuid[]) AND user_id = $2 RETURNING id", ids, user_id)
    _check_all_written(deleted, ids)


async def import_vault(conn: asyncpg.Connection, user_id: uuid.UUID, vault: VaultImport) -> None:
    """Folders and items in two statements and one SyncVault, however many or few there are."""
    await publish.mark_bulk_change(conn)
    folder_ids = await _import_folders(conn, user_id, vault.folders)
    rows = [
        {
            "type": item.type, "data": item.data, "key": item.key, "reprompt": item.reprompt,
            "folders": _folder_placement(user_id, folder_ids[vault.folder_of_item[index]]
                                         if index in vault.folder_of_item else None),
            "favorites": _favorite_placement(user_id, item.favorite),
        }
        for index, item in enumerate(vault.items)
    ]
    if rows:
        await conn.execute(
            """
            INSERT INTO ciphers (user_id, type, data, key, reprompt, folders, favorites)
            SELECT $1, type, data, key, reprompt, folders, favorites
              FROM jsonb_to_recordset($2::jsonb)
                AS c(type smallint, data jsonb, key text, reprompt smallint, folders jsonb, favorites jsonb)
            """,
            user_id, rows)
    # the inserts publish this same SyncVault (identical notifications in one transaction are
    # delivered once); this one publishes it when the import was empty
    await publish.user_event(conn, user_id, PushType.SYNC_VAULT)


# ---- private -------------------------------------------------------------------------------

def _folder_placement(user_id: uuid.UUID, folder_id: uuid.UUID | None) -> dict[str, str]:
    """The user's entry in the folders column: {user id: folder id}, none for no folder."""
    return {str(user_id): str(folder_id)} if folder_id else {}


def _favorite_placement(user_id: uuid.UUID, favorite: bool) -> dict[str, bool]:
    return {str(user_id): True} if favorite else {}


def _check_ids(ids: list[uuid.UUID]) -> None:
    if not ids:
        raise ApiError("No ids given.", field="ids")


def _check_all_written(rows: list[asyncpg.Record], ids: list[uuid.UUID]) -> None:
    """Every id named one of the caller's items, else a 404 that rolls the whole write back."""
    if len(rows) != len(set(ids)):
        raise NotFound("Cipher")


async def _import_folders(conn: asyncpg.Connection, user_id: uuid.UUID, sent: list[Body]) -> list[uuid.UUID]:
    """The id of each folder sent, creating the new ones in one statement."""
    # a folder sent with the id of one of the user's folders is that folder, not a copy
    existing = {str(row["id"]): row["id"] for row in await folders.find_by_user(conn, user_id, keep=True)}
    folder_ids: list[uuid.UUID] = []
    new_folders: dict[uuid.UUID, str] = {}
    for folder in sent:
        given = folder.get("id")
        folder_id = existing.get(given.lower()) if isinstance(given, str) else None
        if folder_id is None:
            folder_id = uuid.uuid4()
            new_folders[folder_id] = folder.str("name", required=True)
        folder_ids.append(folder_id)
    await folders.create_many(conn, user_id, new_folders)
    return folder_ids
