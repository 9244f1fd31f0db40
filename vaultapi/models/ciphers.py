"""The ciphers table: what a client may send, its wire shape, owner-scoped finders and writes.

The encrypted fields are the client's business: they are kept as the JSON the client sent
(column data) and handed back unchanged. What the server does check is what the Bitwarden
server checks: each encrypted field is an EncString within its maximum length
(vaultapi.body_limits), the dates are dates, and the whole item stays within the size Bitwarden
allows one item. Placement (folder, favorite) is per user.

Each write is one statement, so the triggers publish one event for it: a statement that
touches one item publishes that item's event (SyncCipherCreate, SyncCipherUpdate,
SyncLoginDelete), one that touches several publishes a single SyncCiphers. The import is the
exception: a bulk change, one SyncVault however many statements it takes.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from sanic.response import json_dumps

from db.events import PushType
from vaultapi import body_limits, publish
from vaultapi.body import Body, check_enc_string
from vaultapi.database import encode_in_batches
from vaultapi.dates import iso, parse_iso
from vaultapi.errors import ApiError, NotFound
from vaultapi.models import folders

__all__ = [
    "CipherInput",
    "VaultImport",
    "check_folder",
    "check_room",
    "cipher_json",
    "create",
    "delete",
    "encoded_by_user",
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
_COMMON_FIELDS = ("name", "notes", "fields", "passwordHistory")


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
        body.enc_string("name", required=True, max_length=body_limits.CIPHER["name"])
        body.enc_string("notes", max_length=body_limits.CIPHER["notes"])
        data: dict[str, Any] = {"name": body.get("name"), "notes": body.get("notes")}
        for field, shape in _LISTS.items():
            shape.check_list(body.get(field), field)
            data[field] = body.get(field)
        for field, shape in _TYPE_SHAPES.items():
            if body.get(field) is not None:
                shape.check(body.get(field), field)
            data[field] = body.get(field)
        if data[TYPE_FIELDS[cipher_type]] is None:
            raise ApiError(f"A cipher of type {cipher_type} needs {TYPE_FIELDS[cipher_type]}.",
                           field=TYPE_FIELDS[cipher_type])
        if len(json.dumps(data, separators=(",", ":"))) > body_limits.MAX_ITEM_DATA:
            raise ApiError(f"The item is larger than the {body_limits.MAX_ITEM_DATA} characters an item may hold.",
                           field="data")
        reprompt = body.int("reprompt", default=0)
        if reprompt not in (0, 1):
            raise ApiError("reprompt must be 0 or 1.", field="reprompt")
        return cls(
            type=cipher_type,
            data=data,
            key=body.enc_string("key", max_length=body_limits.CIPHER_KEY),
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


@dataclass(frozen=True)
class VaultImport:
    """An import as a client sends it: items, folders, and which item goes in which folder."""

    items: list[CipherInput]
    #: (the id the client gave, or None; the encrypted name), in the client's order
    folders: list[tuple[str | None, str]]
    folder_of_item: dict[int, int]  # item index -> folder index

    @classmethod
    async def parse(cls, body: Body, max_items: int) -> VaultImport:
        """Every entry checked as its own route would check it; the whole refused at the first fault.

        Long lists are checked in slices (vaultapi.body_limits.Pacer), so others keep their turns."""
        pacer = body_limits.Pacer()
        raw_items, raw_folders = body.list("ciphers") or [], body.list("folders") or []
        raw_relations = body.list("folderRelationships") or []
        # counted before any entry is read: each costs work
        if len(raw_items) > max_items:
            raise ApiError(f"An import may hold at most {max_items} items.", field="ciphers")
        if len(raw_folders) > max_items:
            raise ApiError(f"An import may hold at most {max_items} folders.", field="folders")
        if len(raw_relations) > len(raw_items):
            raise ApiError("An item can be placed in one folder only.", field="folderRelationships")
        items = []
        for index, item in enumerate(raw_items):
            with _inside(f"ciphers[{index}]"):
                items.append(CipherInput.parse(_entry(item)))
            await pacer.pace()
        named: list[tuple[str | None, str]] = []
        for index, folder in enumerate(raw_folders):
            with _inside(f"folders[{index}]"):
                folder = _entry(folder)
                name = folder.enc_string("name", required=True, max_length=body_limits.FOLDER_NAME)
            given = folder.get("id")
            named.append((given if isinstance(given, str) else None, name))
            await pacer.pace()
        folder_of_item: dict[int, int] = {}
        for index, relation in enumerate(raw_relations):
            with _inside(f"folderRelationships[{index}]"):
                pair = _entry(relation)
                item, folder = pair.int("key", required=True), pair.int("value", required=True)
            if not (0 <= item < len(items) and 0 <= folder < len(named)):
                raise ApiError("A folder relationship points outside the import.", field="folderRelationships")
            folder_of_item[item] = folder
            await pacer.pace()
        return cls(items=items, folders=named, folder_of_item=folder_of_item)


# ---- what an item may hold -------------------------------------------------------------------
# A shape checks one JSON object of an item. Keys are matched without regard to case (older
# clients write PascalCase), and every spelling is checked, since each is stored. Keys it does
# not know are kept as sent: the size limit of the whole item bounds them. Errors name the
# place with the camelCase names (login.uris[0].uri), never with what the client wrote.

_FieldCheck = Callable[[Any, str], None]


class _Shape:
    def __init__(self, checks: dict[str, _FieldCheck]) -> None:
        self.checks = checks
        self._by_lower = {name.lower(): name for name in checks}

    def check(self, value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise ApiError(f"{where} must be an object.", field=where)
        seen = set()
        for key, inner in value.items():
            name = self._by_lower.get(key.lower())
            if name is not None:
                seen.add(name)
                self.checks[name](inner, f"{where}.{name}")
        for name in self.checks.keys() - seen:
            # absent is null: a required field is refused here
            self.checks[name](None, f"{where}.{name}")

    def check_list(self, value: Any, where: str) -> None:
        if value is None:
            return
        if not isinstance(value, list):
            raise ApiError(f"{where} must be a list.", field=where)
        for index, entry in enumerate(value):
            self.check(entry, f"{where}[{index}]")


def _encrypted(lengths: dict[str, int], *, required: tuple[str, ...] = ()) -> dict[str, _FieldCheck]:
    def check(max_length: int, needed: bool) -> _FieldCheck:
        def encrypted(value: Any, where: str) -> None:
            check_enc_string(value, where, max_length, required=needed)
        return encrypted
    return {name: check(length, name in required) for name, length in lengths.items()}


def _date(value: Any, field: str, *, required: bool = False) -> datetime | None:
    if value is None:
        if required:
            raise ApiError(f"The {field} field is required.", field=field)
        return None
    date = parse_iso(value) if isinstance(value, str) and len(value) <= 64 else None
    if date is None:
        raise ApiError(f"{field} is not a valid date.", field=field)
    return date


def _optional_date(value: Any, where: str) -> None:
    _date(value, where)


def _required_date(value: Any, where: str) -> None:
    _date(value, where, required=True)


def _number(value: Any, where: str) -> None:
    # an enum or an int on the Bitwarden server: a JSON number beyond 32 bits does not bind there
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or not -2**31 <= value < 2**31):
        raise ApiError(f"{where} must be a whole number.", field=where)


def _flag(value: Any, where: str) -> None:
    if value is not None and not isinstance(value, bool):
        raise ApiError(f"{where} must be true or false.", field=where)


_FIELD = _Shape({**_encrypted(body_limits.FIELD), "type": _number, "linkedId": _number})
_PASSWORD_HISTORY = _Shape({**_encrypted(body_limits.PASSWORD_HISTORY, required=("password",)),
                            "lastUsedDate": _required_date})
_LOGIN_URI = _Shape({**_encrypted(body_limits.LOGIN_URI), "match": _number})
_FIDO2_CREDENTIAL = _Shape({**_encrypted(body_limits.FIDO2_CREDENTIAL), "creationDate": _required_date})
#: the lists common to every item
_LISTS = {"fields": _FIELD, "passwordHistory": _PASSWORD_HISTORY}
#: the object of each item type
_TYPE_SHAPES = {
    "login": _Shape({**_encrypted(body_limits.LOGIN), "uris": _LOGIN_URI.check_list,
                     "passwordRevisionDate": _optional_date, "autofillOnPageLoad": _flag,
                     "fido2Credentials": _FIDO2_CREDENTIAL.check_list}),
    "secureNote": _Shape({"type": _number}),
    "card": _Shape(_encrypted(body_limits.CARD)),
    "identity": _Shape(_encrypted(body_limits.IDENTITY)),
    "sshKey": _Shape(_encrypted(body_limits.SSH_KEY)),
}


def _entry(value: Any) -> Body:
    if not isinstance(value, dict):
        raise ApiError("Every entry must be an object.")
    return Body(value)


@contextmanager
def _inside(prefix: str) -> Iterator[None]:
    """Errors raised within name their field inside the entry at prefix (ciphers[3].notes)."""
    try:
        yield
    except ApiError as error:
        field = f"{prefix}.{error.field}" if error.field else prefix
        raise ApiError(error.message, status=error.status, field=field) from None


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


# data as text: decoded row by row below, between turns of the other requests, not all at once
_BY_USER_AS_TEXT = """
    SELECT id, type, data::text AS data, key, reprompt, folders, favorites, revision_date, creation_date,
           deleted_date
      FROM ciphers WHERE user_id = $1 ORDER BY creation_date, id
"""


async def encoded_by_user(conn: asyncpg.Connection, user_id: uuid.UUID) -> list[bytes]:
    """Every item of the user as encoded cipher JSON, in list order (needs a transaction).

    A vault can be tens of megabytes: its rows come through a cursor and each is decoded and
    encoded on its own, so no step holds the event loop for long."""
    pacer = body_limits.Pacer()
    encoded = []
    async for row in conn.cursor(_BY_USER_AS_TEXT, user_id, prefetch=100):
        record = dict(row)
        record["data"] = json.loads(record["data"])
        encoded.append(json_dumps(cipher_json(record, user_id)).encode())
        await pacer.pace()
    return encoded


async def check_room(conn: asyncpg.Connection, user_id: uuid.UUID, adding: int, limit: int) -> None:
    """Refuse a write that would take the user's vault past limit items (MAX_ITEMS_PER_USER).

    The user's row stays locked to the end of the transaction, so two writes cannot both take
    the last place. Call it after any folder lock: every write takes folders before the user."""
    await conn.execute("SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE", user_id)
    held = await conn.fetchval("SELECT count(*) FROM ciphers WHERE user_id = $1", user_id)
    if held + adding > limit:
        raise ApiError(f"A vault may hold at most {limit} items.")


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

async def create(
    conn: asyncpg.Connection, user_id: uuid.UUID, cipher: CipherInput, *, max_items: int
) -> asyncpg.Record:
    """SyncCipherCreate; refused when the vault already holds max_items items."""
    await check_folder(conn, cipher.folder_id, user_id)
    await check_room(conn, user_id, 1, max_items)
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


async def import_vault(conn: asyncpg.Connection, user_id: uuid.UUID, vault: VaultImport, *, max_items: int) -> None:
    """Folders and items in a few large statements and one SyncVault, however many or few there are.

    Refused when the vault would hold more than max_items items."""
    await publish.mark_bulk_change(conn)
    folder_ids = await _import_folders(conn, user_id, vault.folders)
    # after the folder locks above: every write takes folders before the user's row
    await check_room(conn, user_id, len(vault.items), max_items)
    batches = await encode_in_batches(
        {
            "type": item.type, "data": item.data, "key": item.key, "reprompt": item.reprompt,
            "folders": _folder_placement(user_id, folder_ids[vault.folder_of_item[index]]
                                         if index in vault.folder_of_item else None),
            "favorites": _favorite_placement(user_id, item.favorite),
        }
        for index, item in enumerate(vault.items)
    )
    # one statement per batch; the events of one transaction all carry its now(), so the
    # statements still publish one SyncVault
    for rows in batches:
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


async def _import_folders(
    conn: asyncpg.Connection, user_id: uuid.UUID, sent: list[tuple[str | None, str]]
) -> list[uuid.UUID]:
    """The id of each folder sent, creating the new ones in a few large statements."""
    # a folder sent with the id of one of the user's folders is that folder, not a copy
    existing = {str(row["id"]): row["id"] for row in await folders.find_by_user(conn, user_id, keep=True)}
    folder_ids: list[uuid.UUID] = []
    new_folders: dict[uuid.UUID, str] = {}
    for given, name in sent:
        folder_id = existing.get(given.lower()) if given is not None else None
        if folder_id is None:
            folder_id = uuid.uuid4()
            new_folders[folder_id] = name
        folder_ids.append(folder_id)
    await folders.create_many(conn, user_id, new_folders)
    return folder_ids
