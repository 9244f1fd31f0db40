"""The ciphers table: what a client may send, its wire shape, and owner-scoped finders.

The encrypted fields are the client's business: they are kept as the JSON the client sent
(column data) and handed back unchanged. Placement (folder, favorite) is per user.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from vaultapi.body import Body
from vaultapi.dates import iso, parse_iso
from vaultapi.errors import ApiError, NotFound
from vaultapi.models import folders

__all__ = [
    "CipherInput",
    "check_folder",
    "cipher_json",
    "find_by_id_and_user",
    "find_by_user",
    "require",
    "require_all",
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
        return cls(
            type=cipher_type,
            data=data,
            key=body.str("key", max_length=10_000),
            reprompt=reprompt,
            folder_id=body.uuid("folderId"),
            favorite=body.bool("favorite"),
            last_known_revision_date=_date(body.get("lastKnownRevisionDate"), "lastKnownRevisionDate"),
        )

    def check_not_stale(self, row: asyncpg.Record) -> None:
        """Refuse an edit made on another copy than the stored one.

        As the Bitwarden server compares them (CipherService.ValidateCipherLastKnownRevisionDate):
        the dates may differ by a second either way, for clocks and rounding to milliseconds; a
        date further ahead is refused as much as one behind, since no client holds a copy newer
        than the server's. A client that sends no date is not checked."""
        known = self.last_known_revision_date
        if known is not None and abs((row["revision_date"] - known).total_seconds()) > 1:
            raise ApiError("The client copy of this cipher is out of date. Resync the client and try again.")


def _date(value: Any, field: str, *, required: bool = False) -> datetime | None:
    if value is None:
        if required:
            raise ApiError(f"The {field} field is required.", field=field)
        return None
    date = parse_iso(value) if isinstance(value, str) and len(value) <= 64 else None
    if date is None:
        raise ApiError(f"{field} is not a valid date.", field=field)
    return date


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
        "organizationUseTotp": False,
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


async def require_all(conn: asyncpg.Connection, ids: list[uuid.UUID], user_id: uuid.UUID) -> None:
    """Every id names one of the caller's ciphers, else nothing happens at all (404)."""
    if not ids:
        raise ApiError("No ids given.", field="ids")
    owned = await conn.fetchval(
        "SELECT count(*) FROM ciphers WHERE id = ANY($1::uuid[]) AND user_id = $2", list(set(ids)), user_id)
    if owned != len(set(ids)):
        raise NotFound("Cipher")


async def check_folder(conn: Conn, folder_id: uuid.UUID | None, user_id: uuid.UUID) -> None:
    """The folder an item is placed in is the caller's, and stays until the write commits."""
    if folder_id is not None and await folders.find_by_id_and_user(conn, folder_id, user_id, keep=True) is None:
        raise ApiError("Invalid folder.", field="folderId")
