"""The ciphers table: what a client may send, its wire shapes, finders and writes.

The encrypted fields are the client's business: they are kept as the JSON the client sent
(column data) and handed back unchanged. What the server does check is what the Bitwarden
server checks: each encrypted field is an EncString within its maximum length
(vaultapi.body_limits), the dates are dates, and the whole item stays within the size Bitwarden
allows one item. Placement (folder, favorite) is per user.

An item belongs to a user, or to an organization (user_id null) and then names its collections
in collection_ids. Who reaches an item, with which rights, is the cipher_access view (migration
0006): every read and every write here goes through it, so an item the caller may not see is a
404, like a missing one.

Each write is one statement, so the triggers publish one event for it: a statement that
touches one item publishes that item's event (SyncCipherCreate, SyncCipherUpdate,
SyncLoginDelete), one that touches several publishes a single bulk event per owner. An
organization's item is published with the organization and no user. The imports are the
exception: a bulk change, one SyncVault however many statements they take.

How many items: a user's own items are at most MAX_ITEMS_PER_USER (check_room), and so are an
organization's (check_organization_room), counted apart. An organization's items are not the
user's to count: a member cannot stop the organization from growing, and the same cap keeps one
organization's sync and admin listing within what a large personal vault costs.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import ujson
from sanic.response import json_dumps

from core import capabilities
from db.events import PushType
from vaultapi import body_limits, publish
from vaultapi.body import Body, check_enc_string
from vaultapi.database import EncodedJson, encode_in_batches
from vaultapi.dates import iso, parse_iso
from vaultapi.errors import ApiError, NotFound
from vaultapi.models import attachment_shares, collections, folders, memberships
from vaultapi.models.file_shapes import attachment_json
from vaultapi.models.memberships import Member

__all__ = [
    "CipherInput",
    "ImportedCollection",
    "OrganizationImport",
    "Visible",
    "VaultImport",
    "check_folder",
    "check_room",
    "cipher_json",
    "create",
    "delete",
    "check_organization_room",
    "encoded_for_user",
    "find_visible",
    "visible_in_organization",
    "import_organization",
    "import_vault",
    "mini_details_json",
    "move",
    "of_organization",
    "purge_organization",
    "require",
    "set_collections",
    "set_deleted",
    "set_placement",
    "share",
    "share_many",
    "update",
]

Conn = asyncpg.Connection | asyncpg.Pool

#: cipher type -> the key of its type-specific object
TYPE_FIELDS = {1: "login", 2: "secureNote", 3: "card", 4: "identity", 5: "sshKey"}
_COMMON_FIELDS = ("name", "notes", "fields", "passwordHistory")

_NO_EDIT = "You do not have permissions to edit this."
#: an attachment's encrypted name and key (AttachmentRequestModel's EncStrings)
ATTACHMENT_FIELD = 1_000
_NO_COLLECTION = "Specified CollectionId does not exist on the specified Organization."


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
    organization_id: uuid.UUID | None = None
    #: the user whose keys the client encrypted with, when it says so
    encrypted_for: uuid.UUID | None = None
    #: attachments2: attachment id -> its file name and key encrypted anew (sharing, a new item key)
    attachment_keys: dict[str, tuple[str, str | None]] = field(default_factory=dict)

    @classmethod
    def parse(cls, body: Body) -> CipherInput:
        cipher_type = body.int("type", required=True)
        if cipher_type not in TYPE_FIELDS:
            raise ApiError(f"Unknown cipher type {cipher_type}.", field="type")
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
            organization_id=body.uuid("organizationId"),
            encrypted_for=body.uuid("encryptedFor"),
            attachment_keys=_attachment_keys(body),
        )

    @classmethod
    async def parse_many(cls, values: list[Any], field: str, max_count: int,
                         pacer: body_limits.Pacer | None = None) -> list[CipherInput]:
        """Each entry of a list of items (an import's, a bulk share's), its errors named
        field[index].name; counted before any is read, and read in slices."""
        if len(values) > max_count:
            raise ApiError(f"At most {max_count} items may be sent at once.", field=field)
        pacer = pacer or body_limits.Pacer()
        items = []
        for index, item in enumerate(values):
            with _inside(f"{field}[{index}]"):
                items.append(cls.parse(_entry(item)))
            await pacer.pace()
        return items

    def check_not_stale(self, row: asyncpg.Record) -> None:
        """Refuse an edit made on another copy than the stored one.

        As the Bitwarden server compares them (CipherService.ValidateCipherLastKnownRevisionDate):
        the dates may differ by a second either way, for clocks and rounding to milliseconds; a
        date further ahead is refused as much as one behind, since no client holds a copy newer
        than the server's. A client that sends no date is not checked."""
        if self.last_known_revision_date is not None:
            check_revision(row, self.last_known_revision_date)

    def check_encrypted_for(self, user_id: uuid.UUID) -> None:
        if self.encrypted_for is not None and self.encrypted_for != user_id:
            raise ApiError("Cipher was not encrypted for the current user. Please try again.", field="encryptedFor")


def _attachment_keys(body: Body) -> dict[str, tuple[str, str | None]]:
    """attachments2 (CipherRequestModel.Attachments2): each attachment's name and key as the
    client encrypted them again, under the organization's key when it shares the item."""
    given = body.get("attachments2")
    if given is None:
        return {}
    if not isinstance(given, dict):
        raise ApiError("attachments2 must be an object.", field="attachments2")
    keys = {}
    for attachment_id, entry in given.items():
        with _inside(f"attachments2.{attachment_id[:40]}"):
            entry = _entry(entry)
            keys[attachment_id] = (entry.enc_string("fileName", required=True, max_length=ATTACHMENT_FIELD) or "",
                                   entry.enc_string("key", max_length=ATTACHMENT_FIELD))
    return keys


def check_revision(row: asyncpg.Record, known: datetime) -> None:
    """The client's copy of the item is the stored one (CipherInput.check_not_stale)."""
    if abs((row["revision_date"] - known).total_seconds()) > 1:
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
        _check_import_size(raw_items, raw_folders, "folders")
        if len(raw_relations) > len(raw_items):
            raise ApiError("An item can be placed in one folder only.", field="folderRelationships")
        items = await CipherInput.parse_many(raw_items, "ciphers", max_items, pacer)
        named: list[tuple[str | None, str]] = []
        for index, folder in enumerate(raw_folders):
            with _inside(f"folders[{index}]"):
                folder = _entry(folder)
                name = folder.enc_string("name", required=True, max_length=body_limits.FOLDER_NAME)
            given = folder.get("id")
            named.append((given if isinstance(given, str) else None, name))
            await pacer.pace()
        folder_of_item = dict(await _relationships(raw_relations, "folderRelationships", len(items), len(named),
                                                   pacer))
        return cls(items=items, folders=named, folder_of_item=folder_of_item)


@dataclass(frozen=True)
class ImportedCollection:
    """A collection of an organization import: an existing one by id, or a new one."""

    given_id: str | None
    name: str
    external_id: str | None


@dataclass(frozen=True)
class OrganizationImport:
    """An import into an organization: items, collections (new, or existing ones by id), and
    which item goes in which collections."""

    items: list[CipherInput]
    collections: list[ImportedCollection]
    collections_of_item: dict[int, list[int]]  # item index -> collection indexes

    @classmethod
    async def parse(cls, body: Body, max_items: int) -> OrganizationImport:
        """As VaultImport.parse, each collection checked as the collection routes check one
        (ImportOrganizationCiphersRequestModel: CollectionWithIdRequestModel)."""
        pacer = body_limits.Pacer()
        raw_items, raw_collections = body.list("ciphers") or [], body.list("collections") or []
        raw_relations = body.list("collectionRelationships") or []
        _check_import_size(raw_items, raw_collections, "collections")
        if len(raw_relations) > body_limits.IMPORT_COLLECTION_RELATIONSHIPS:
            raise ApiError(_TOO_MUCH_AT_ONCE, field="collectionRelationships")
        # each distinct pair once; more would repeat one
        if len(raw_relations) > len(raw_items) * len(raw_collections):
            raise ApiError("A collection relationship is given twice.", field="collectionRelationships")
        items = await CipherInput.parse_many(raw_items, "ciphers", max_items, pacer)
        sent: list[ImportedCollection] = []
        for index, collection in enumerate(raw_collections):
            with _inside(f"collections[{index}]"):
                collection = _entry(collection)
                name, external_id = collections.parse_fields(collection, required=True)
            given = collection.get("id")
            sent.append(ImportedCollection(given if isinstance(given, str) else None, name, external_id))
            await pacer.pace()
        collections_of_item: dict[int, list[int]] = {}
        for item, target in await _relationships(raw_relations, "collectionRelationships", len(items), len(sent),
                                                 pacer):
            collections_of_item.setdefault(item, []).append(target)
        return cls(items=items, collections=sent, collections_of_item=collections_of_item)


#: Bitwarden's words for an import past its caps
_TOO_MUCH_AT_ONCE = "You cannot import this much data at once."


def _check_import_size(items: list[Any], groups: list[Any], groups_field: str) -> None:
    """An import within body_limits' caps on items and on folders (or collections)."""
    if len(items) > body_limits.IMPORT_ITEMS:
        raise ApiError(_TOO_MUCH_AT_ONCE, field="ciphers")
    if len(groups) > body_limits.IMPORT_FOLDERS:
        raise ApiError(_TOO_MUCH_AT_ONCE, field=groups_field)


async def _relationships(raw: list[Any], field: str, items: int, targets: int,
                         pacer: body_limits.Pacer) -> list[tuple[int, int]]:
    """The (item index, target index) pairs of an import, each inside the import."""
    pairs = []
    for index, relation in enumerate(raw):
        with _inside(f"{field}[{index}]"):
            pair = _entry(relation)
            item, target = pair.int("key", required=True), pair.int("value", required=True)
        if not (0 <= item < items and 0 <= target < targets):
            raise ApiError("A relationship points outside the import.", field=field)
        pairs.append((item, target))
        await pacer.pace()
    return pairs


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


parse_date = _date


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


@dataclass(frozen=True)
class Visible:
    """An item as one user reaches it: the row, and that user's rights and view of it."""

    row: asyncpg.Record
    read_only: bool
    hide_passwords: bool
    manage: bool
    #: the item's collections this user may know of
    collection_ids: list[uuid.UUID]

    @classmethod
    def of(cls, row: asyncpg.Record, access: asyncpg.Record) -> Visible:
        return cls(row, access["read_only"], access["hide_passwords"], access["manage"],
                   list(access["collection_ids"] or []))

    @property
    def id(self) -> uuid.UUID:
        return self.row["id"]

    @property
    def may_delete(self) -> bool:
        """limitItemDeletion is off (organizations.COLLECTION_MANAGEMENT): whoever may edit an
        item may delete and restore it."""
        return self.manage or not self.read_only


# ---- wire shapes ---------------------------------------------------------------------------

def _content_json(row: asyncpg.Record) -> dict[str, Any]:
    """What every shape of an item carries: its encrypted content, as the client sent it."""
    data = row["data"]
    type_data = data.get(TYPE_FIELDS.get(row["type"], ""))
    return {
        "id": str(row["id"]),
        "organizationId": str(row["organization_id"]) if row["organization_id"] else None,
        "type": row["type"],
        **{field: data.get(field) for field in _COMMON_FIELDS},
        **{field: data.get(field) for field in TYPE_FIELDS.values()},
        # The legacy flat view, as a JSON string: the clients' SDK refuses an object here.
        "data": json_dumps({**(type_data or {}), **{field: data.get(field) for field in _COMMON_FIELDS}}),
        "key": row["key"],
        "reprompt": row["reprompt"],
        "attachments": [attachment_json(attachment) for attachment in row["attachments"]] or None,
        # Without premium the clients hide an item's TOTP code unless this says the code may be
        # shown; generating codes needs nothing from the server, so every item may show them.
        "organizationUseTotp": capabilities.ORGANIZATION_TOTP,
        "revisionDate": iso(row["revision_date"]),
        "creationDate": iso(row["creation_date"]),
        "deletedDate": iso(row["deleted_date"]),
        "archivedDate": None,
    }


def cipher_json(item: Visible, user_id: uuid.UUID) -> dict[str, Any]:
    """An item as the user sees it (CipherDetailsResponseModel), with the user's placement and rights."""
    row, owner = item.row, str(user_id)
    return {
        **_content_json(row),
        "folderId": row["folders"].get(owner),
        "favorite": bool(row["favorites"].get(owner, False)),
        "edit": not item.read_only,
        "viewPassword": not item.hide_passwords,
        "permissions": {"delete": item.may_delete, "restore": item.may_delete},
        "collectionIds": [str(collection_id) for collection_id in item.collection_ids],
        "object": "cipherDetails",
    }


def mini_details_json(row: asyncpg.Record) -> dict[str, Any]:
    """An organization's item as its admin console lists it (CipherMiniDetailsResponseModel):
    no one's placement or rights, every collection."""
    return {**_content_json(row), "collectionIds": [str(c) for c in row["collection_ids"]],
            "object": "cipherMiniDetails"}


# ---- finders -------------------------------------------------------------------------------

# an item's uploaded attachments, oldest first, as a column of its row (c)
_ATTACHMENTS = """
    coalesce((SELECT json_agg(json_build_object('id', a.id, 'file_name', a.file_name, 'key', a.key, 'size', a.size)
                              ORDER BY a.created_at, a.id)
                FROM attachments a WHERE a.cipher_id = c.id AND a.uploaded), '[]') AS attachments
"""

# data as text: decoded row by row below, between turns of the other requests, not all at once
_BY_ID_AS_TEXT = f"""
    SELECT c.id, c.user_id, c.organization_id, c.collection_ids, c.type, c.data::text AS data, c.key, c.reprompt,
           c.folders, c.favorites, c.revision_date, c.creation_date, c.deleted_date, {_ATTACHMENTS}
      FROM ciphers c WHERE c.id = ANY($1::uuid[]) ORDER BY c.creation_date, c.id
"""


async def encoded_for_user(conn: asyncpg.Connection, user_id: uuid.UUID) -> list[bytes]:
    """Every item the user reaches (own and organizations'), as encoded cipher JSON, oldest
    first. Call it in a repeatable-read transaction: the rights and the rows are two reads.

    A vault can be tens of megabytes: its rows come through a cursor and each is decoded and
    encoded on its own, so no step holds the event loop for long. The rights first, then the
    rows by id: the planner cannot know how many items one user reaches, and would read the
    whole table to join them."""
    pacer = body_limits.Pacer()
    access = {row["cipher_id"]: row for row in
              await conn.fetch("SELECT * FROM cipher_access WHERE user_id = $1", user_id)}
    await pacer.pace()
    encoded = []
    async for row in conn.cursor(_BY_ID_AS_TEXT, list(access), prefetch=100):
        record = dict(row)
        record["data"] = ujson.loads(record["data"])  # json.loads' result, big integers too, in a third of the time
        encoded.append(json_dumps(cipher_json(Visible.of(record, access[row["id"]]), user_id)).encode())
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


async def check_organization_room(conn: asyncpg.Connection, organization_id: uuid.UUID, adding: int,
                                  limit: int) -> None:
    """As check_room, for an organization's items: at most limit of them, the organization's row
    locked to the end of the transaction. Call it before any collection lock: the member and
    collection routes take the organization first (memberships.require_member(..., lock=True))."""
    await conn.execute("SELECT 1 FROM organizations WHERE id = $1 FOR NO KEY UPDATE", organization_id)
    held = await conn.fetchval("SELECT count(*) FROM ciphers WHERE organization_id = $1", organization_id)
    if held + adding > limit:
        raise ApiError(f"An organization may hold at most {limit} items.")


_ONE_VISIBLE = f"""
SELECT c.*, {_ATTACHMENTS}, a.read_only AS access_read_only, a.hide_passwords AS access_hide_passwords,
       a.manage AS access_manage, a.collection_ids AS access_collection_ids
  FROM cipher_access a JOIN ciphers c ON c.id = a.cipher_id
 WHERE a.user_id = $1 AND a.cipher_id = ANY($2::uuid[])
"""


async def find_visible(conn: Conn, ids: list[uuid.UUID], user_id: uuid.UUID, *,
                       lock: bool = False) -> list[Visible]:
    """The items among ids that the user reaches (locked until the transaction ends: lock)."""
    rows = await conn.fetch(_ONE_VISIBLE + " ORDER BY c.creation_date, c.id" + (" FOR UPDATE OF c" if lock else ""),
                            user_id, ids)
    return [Visible(row, row["access_read_only"], row["access_hide_passwords"], row["access_manage"],
                    list(row["access_collection_ids"] or [])) for row in rows]


async def require(conn: Conn, cipher_id: uuid.UUID, user_id: uuid.UUID, *, lock: bool = False) -> Visible:
    """An item the caller reaches; another's item is as unknown as a missing one."""
    found = await find_visible(conn, [cipher_id], user_id, lock=lock)
    if not found:
        raise NotFound("Cipher")
    return found[0]


async def visible_in_organization(conn: Conn, user_id: uuid.UUID, organization_id: uuid.UUID) -> list[Visible]:
    """The organization's items the user reaches (the view first, the rows by id after)."""
    ids = [row["cipher_id"] for row in await conn.fetch("SELECT cipher_id FROM cipher_access WHERE user_id = $1",
                                                        user_id)]
    return [item for item in await find_visible(conn, ids, user_id) if item.row["organization_id"] == organization_id]


async def of_organization(conn: Conn, organization_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch(f"SELECT c.*, {_ATTACHMENTS} FROM ciphers c WHERE c.organization_id = $1"
                            " ORDER BY c.creation_date, c.id", organization_id)


async def check_folder(conn: Conn, folder_id: uuid.UUID | None, user_id: uuid.UUID) -> None:
    """The folder an item is placed in is the caller's, and stays until the write commits."""
    if folder_id is not None and await folders.find_by_id_and_user(conn, folder_id, user_id, keep=True) is None:
        raise ApiError("Invalid folder.", field="folderId")


# ---- writes: call them inside publish.write, whose transaction a refusal rolls back ----------

async def create(conn: asyncpg.Connection, user_id: uuid.UUID, cipher: CipherInput,
                 collection_ids: list[uuid.UUID], *, max_items: int) -> Visible:
    """SyncCipherCreate: the user's item, or an organization's in the collections given; refused
    when the vault, or the organization, already holds max_items items."""
    cipher.check_encrypted_for(user_id)
    await check_folder(conn, cipher.folder_id, user_id)
    if cipher.organization_id is None:
        if collection_ids:
            raise ApiError("Only an organization's item goes in collections.", field="collectionIds")
        await check_room(conn, user_id, 1, max_items)
        owner, organization_id = user_id, None
    else:
        member = await _member_named_in_body(conn, cipher.organization_id, user_id)
        await check_organization_room(conn, member.organization_id, 1, max_items)
        await _check_collections(conn, member, collection_ids)
        if not collection_ids and not member.has_full_access:
            raise ApiError("An organization item needs a collection you can edit.", field="collectionIds")
        owner, organization_id = None, member.organization_id
    cipher_id = await conn.fetchval(
        """
        INSERT INTO ciphers (user_id, organization_id, collection_ids, type, data, key, reprompt, folders, favorites)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id
        """,
        owner, organization_id, _unique(collection_ids), cipher.type, cipher.data, cipher.key, cipher.reprompt,
        _folder_placement(user_id, cipher.folder_id), _favorite_placement(user_id, cipher.favorite))
    return await require(conn, cipher_id, user_id)


async def update(conn: asyncpg.Connection, cipher_id: uuid.UUID, user_id: uuid.UUID, cipher: CipherInput) -> Visible:
    """The item's content and this user's placement of it: SyncCipherUpdate.

    Refused when the client edited an older copy than the stored one, or may not edit."""
    item = await require(conn, cipher_id, user_id, lock=True)
    if cipher.organization_id != item.row["organization_id"]:
        raise ApiError("Organization mismatch. Re-sync if you recently moved this item, then try again.",
                       field="organizationId")
    if item.read_only:
        raise ApiError(_NO_EDIT)
    cipher.check_encrypted_for(user_id)
    cipher.check_not_stale(item.row)
    await check_folder(conn, cipher.folder_id, user_id)
    await conn.execute(
        """
        UPDATE ciphers SET type = $2, data = $3, key = $4, reprompt = $5,
                           folders = (folders - $6::text) || $7, favorites = (favorites - $6::text) || $8
         WHERE id = $1
        """,
        cipher_id, cipher.type, cipher.data, cipher.key, cipher.reprompt, str(user_id),
        _folder_placement(user_id, cipher.folder_id), _favorite_placement(user_id, cipher.favorite))
    await _rekey_attachments(conn, cipher_id, cipher)
    return await require(conn, cipher_id, user_id)


async def set_placement(
    conn: asyncpg.Connection, cipher_id: uuid.UUID, user_id: uuid.UUID, folder_id: uuid.UUID | None, favorite: bool
) -> Visible:
    """Folder and favorite only, what a user changes without the item's key (a read-only member
    too): SyncCipherUpdate."""
    await require(conn, cipher_id, user_id, lock=True)
    await check_folder(conn, folder_id, user_id)
    await conn.execute(
        "UPDATE ciphers SET folders = (folders - $2::text) || $3, favorites = (favorites - $2::text) || $4"
        " WHERE id = $1",
        cipher_id, str(user_id), _folder_placement(user_id, folder_id), _favorite_placement(user_id, favorite))
    return await require(conn, cipher_id, user_id)


async def move(
    conn: asyncpg.Connection, ids: list[uuid.UUID], user_id: uuid.UUID, folder_id: uuid.UUID | None
) -> None:
    """Into the folder (none: out of any), one statement: SyncCiphers, or one item's SyncCipherUpdate."""
    await check_folder(conn, folder_id, user_id)
    await _require_all(conn, ids, user_id)
    await conn.execute(
        "UPDATE ciphers SET folders = (folders - $2::text) || $3 WHERE id = ANY($1::uuid[])",
        ids, str(user_id), _folder_placement(user_id, folder_id))


async def set_deleted(
    conn: asyncpg.Connection, ids: list[uuid.UUID], user_id: uuid.UUID, deleted: bool
) -> list[Visible]:
    """Into the trash or back out, one statement: SyncCiphers, or one item's SyncCipherUpdate."""
    items = await _require_all(conn, ids, user_id)
    if not all(item.may_delete for item in items):
        raise ApiError(f"You do not have permissions to {'delete' if deleted else 'restore'} this.")
    await conn.execute(
        f"UPDATE ciphers SET deleted_date = {'now()' if deleted else 'NULL'} WHERE id = ANY($1::uuid[])", ids)
    return await find_visible(conn, ids, user_id)


async def delete(conn: asyncpg.Connection, ids: list[uuid.UUID], user_id: uuid.UUID) -> None:
    """For good, one statement: SyncCiphers, or one item's SyncLoginDelete."""
    items = await _require_all(conn, ids, user_id)
    if not all(item.may_delete for item in items):
        raise ApiError("You do not have permissions to delete this.")
    await conn.execute("DELETE FROM ciphers WHERE id = ANY($1::uuid[])", ids)


async def purge_organization(conn: asyncpg.Connection, organization_id: uuid.UUID) -> None:
    """Every item of the organization, for good, one statement: its one bulk event (its
    collections stay, as in Bitwarden)."""
    await publish.mark_bulk_change(conn)
    await conn.execute("DELETE FROM ciphers WHERE organization_id = $1", organization_id)


async def share(conn: asyncpg.Connection, cipher_id: uuid.UUID, user_id: uuid.UUID, cipher: CipherInput,
                collection_ids: list[uuid.UUID], *, max_items: int) -> Visible:
    """The user's own item becomes the organization's, re-encrypted by the client under the
    organization key, in the collections given. One statement: the owner's SyncLoginDelete and
    the organization's SyncCipherCreate."""
    # looked at first, locked only after the organization: the organization routes lock in that order
    await _require_own(conn, cipher_id, user_id)
    member = await _sharing_member(conn, cipher, user_id, collection_ids, 1, max_items)
    item = await _require_own(conn, cipher_id, user_id, lock=True)
    _check_attachments_follow(item, cipher, await attachment_shares.held_for(conn, cipher_id, member.organization_id))
    cipher.check_not_stale(item.row)
    await check_folder(conn, cipher.folder_id, user_id)
    await conn.execute(
        """
        UPDATE ciphers SET user_id = NULL, organization_id = $2, collection_ids = $3, type = $4, data = $5,
                           key = $6, reprompt = $7, folders = (folders - $8::text) || $9,
                           favorites = (favorites - $8::text) || $10
         WHERE id = $1
        """,
        cipher_id, member.organization_id, _unique(collection_ids), cipher.type, cipher.data, cipher.key,
        cipher.reprompt, str(user_id), _folder_placement(user_id, cipher.folder_id),
        _favorite_placement(user_id, cipher.favorite))
    await _rekey_attachments(conn, cipher_id, cipher)
    await attachment_shares.take_shares(conn, cipher_id, member.organization_id)
    return await require(conn, cipher_id, user_id)


async def share_many(conn: asyncpg.Connection, user_id: uuid.UUID, items: dict[uuid.UUID, CipherInput],
                     collection_ids: list[uuid.UUID], *, max_items: int) -> list[asyncpg.Record]:
    """Several of the user's own items become one organization's, in one statement (bulk events
    for the owner and the organization). Returns each item's id and revision date."""
    organizations = {cipher.organization_id for cipher in items.values()}
    if len(organizations) != 1:
        raise ApiError("The items must all go to one organization.", field="ciphers")
    member = None
    for cipher in items.values():
        if member is None:
            member = await _sharing_member(conn, cipher, user_id, collection_ids, len(items), max_items)
        cipher.check_encrypted_for(user_id)
    assert member is not None
    owned = await _require_all(conn, list(items), user_id)
    if any(item.row["user_id"] != user_id for item in owned):
        raise ApiError("Trying to share ciphers that you do not own.")
    for item in owned:
        _check_attachments_follow(item, items[item.id],
                                  await attachment_shares.held_for(conn, item.id, member.organization_id))
        items[item.id].check_not_stale(item.row)
        await _rekey_attachments(conn, item.id, items[item.id])
        await attachment_shares.take_shares(conn, item.id, member.organization_id)
    return await conn.fetch(
        """
        UPDATE ciphers c SET user_id = NULL, organization_id = $2, collection_ids = $3, type = s.type,
                             data = s.data, key = s.key, reprompt = s.reprompt
          FROM jsonb_to_recordset($1::jsonb) AS s(id uuid, type smallint, data jsonb, key text, reprompt smallint)
         WHERE c.id = s.id
        RETURNING c.id, c.revision_date
        """,
        [{"id": str(cipher_id), "type": cipher.type, "data": cipher.data, "key": cipher.key,
          "reprompt": cipher.reprompt} for cipher_id, cipher in items.items()],
        member.organization_id, _unique(collection_ids))


async def set_collections(conn: asyncpg.Connection, cipher_id: uuid.UUID, user_id: uuid.UUID,
                          collection_ids: list[uuid.UUID]) -> Visible | None:
    """The organization item's collections, as far as the member may change them: those it may
    not edit stay as they are. SyncCipherUpdate. None when the member no longer reaches it."""
    item = await require(conn, cipher_id, user_id, lock=True)
    organization_id = item.row["organization_id"]
    if organization_id is None or item.hide_passwords:
        raise NotFound("Cipher")
    if item.read_only:
        raise ApiError(_NO_EDIT)
    member = await memberships.require_member(conn, organization_id, user_id)
    editable = await _check_collections(conn, member, collection_ids)
    kept = [collection_id for collection_id in item.row["collection_ids"] if collection_id not in editable]
    await conn.execute("UPDATE ciphers SET collection_ids = $2 WHERE id = $1",
                       cipher_id, _unique(kept + collection_ids))
    found = await find_visible(conn, [cipher_id], user_id)
    return found[0] if found else None


async def prepared_import(kind: str, body: bytes, *, max_items: int,
                          organization_id: str | None = None) -> tuple[list[Any], int, list[str]]:
    """An import's body read and checked as its route checks it (``kind`` "vault" or
    "organization"), in vaultapi.import_worker's child: its folders (given id, name) or
    collections (given id, name, external id), its item count, and its rows in batches of JSON,
    each row naming its folder or collections by index into those."""
    parsed = await Body.parse_paced(body)
    if kind == "vault":
        vault = await VaultImport.parse(parsed, max_items)
        for item in vault.items:
            _check_personal(item)
        groups: list[Any] = [list(folder) for folder in vault.folders]
        rows = ({"type": item.type, "data": item.data, "key": item.key, "reprompt": item.reprompt,
                 "folder": vault.folder_of_item.get(index), "favorite": item.favorite}
                for index, item in enumerate(vault.items))
    else:
        into = await OrganizationImport.parse(parsed, max_items)
        for item in into.items:
            if item.organization_id is not None and str(item.organization_id) != organization_id:
                raise ApiError("Every item must be the organization's.", field="ciphers")
        groups = [[c.given_id, c.name, c.external_id] for c in into.collections]
        rows = ({"type": item.type, "data": item.data, "key": item.key, "reprompt": item.reprompt,
                 "collections": _unique(into.collections_of_item.get(index, []))}
                for index, item in enumerate(into.items))
    items = len(vault.items) if kind == "vault" else len(into.items)
    return groups, items, [batch.text for batch in await encode_in_batches(rows)]


async def import_vault(conn: asyncpg.Connection, user_id: uuid.UUID, folders_sent: list[Any], count: int,
                       batches: list[str], *, max_items: int) -> None:
    """Folders and items of a prepared import (prepared_import) in a few large statements and one
    SyncVault, however many or few there are. Refused when the vault would hold more than
    max_items items."""
    await publish.mark_bulk_change(conn)
    folder_ids = await _import_folders(conn, user_id, [(given, name) for given, name in folders_sent])
    # after the folder locks above: every write takes folders before the user's row
    await check_room(conn, user_id, count, max_items)
    # one statement per batch; the events of one transaction all carry its now(), so the
    # statements still publish one SyncVault
    for rows in batches:
        await conn.execute(
            """
            INSERT INTO ciphers (user_id, type, data, key, reprompt, folders, favorites)
            SELECT $1::uuid, type, data, key, reprompt,
                   CASE WHEN folder IS NULL THEN '{}' ELSE jsonb_build_object($1::uuid::text, ($3::uuid[])[folder + 1]) END,
                   CASE WHEN favorite THEN jsonb_build_object($1::uuid::text, true) ELSE '{}' END
              FROM jsonb_to_recordset($2::jsonb)
                AS c(type smallint, data jsonb, key text, reprompt smallint, folder integer, favorite boolean)
            """,
            user_id, EncodedJson(rows), folder_ids)
    # the inserts publish this same SyncVault (identical notifications in one transaction are
    # delivered once); this one publishes it when the import was empty
    await publish.user_event(conn, user_id, PushType.SYNC_VAULT)


async def import_organization(conn: asyncpg.Connection, member: Member, collections_sent: list[Any], count: int,
                              batches: list[str], *, max_items: int) -> None:
    """Collections and items of a prepared import into the organization, a few large statements,
    and a SyncVault to the importer. New collections need the right to create them; an importer
    without full access manages the collections it makes, and may fill only those it may edit.
    Refused when the organization would hold more than max_items items. Call it with the
    organization locked (memberships.require_member(..., lock=True))."""
    await publish.mark_bulk_change(conn)
    await check_organization_room(conn, member.organization_id, count, max_items)
    collection_ids = await _import_collections(
        conn, member, [ImportedCollection(given, name, external_id) for given, name, external_id in collections_sent])
    for rows in batches:
        await conn.execute(
            """
            INSERT INTO ciphers (organization_id, type, data, key, reprompt, collection_ids)
            SELECT $1, type, data, key, reprompt,
                   -- each collection once, in the order first named (two may be one collection)
                   ARRAY(SELECT id FROM (SELECT ($3::uuid[])[n::integer + 1] AS id, min(o) AS first
                                           FROM jsonb_array_elements_text(collections) WITH ORDINALITY AS e (n, o)
                                          GROUP BY 1) AS named
                          ORDER BY first)
              FROM jsonb_to_recordset($2::jsonb)
                AS c(type smallint, data jsonb, key text, reprompt smallint, collections jsonb)
            """,
            member.organization_id, EncodedJson(rows), collection_ids)
    await publish.user_event(conn, member.user_id, PushType.SYNC_VAULT)


# ---- private -------------------------------------------------------------------------------

def _folder_placement(user_id: uuid.UUID, folder_id: uuid.UUID | None) -> dict[str, str]:
    """The user's entry in the folders column: {user id: folder id}, none for no folder."""
    return {str(user_id): str(folder_id)} if folder_id else {}


def _favorite_placement(user_id: uuid.UUID, favorite: bool) -> dict[str, bool]:
    return {str(user_id): True} if favorite else {}


def _unique(ids: list[uuid.UUID]) -> list[uuid.UUID]:
    return list(dict.fromkeys(ids))


def _check_attachments_follow(item: Visible, cipher: CipherInput, held: set[str]) -> None:
    """An item moving to an organization brings every attachment's key, encrypted anew
    (attachments2): a key left under the user's would open for no member. An old attachment
    without a key of its own comes re-encrypted instead, its file held for the organization."""
    if any(attachment["id"] not in held and (attachment["id"] not in cipher.attachment_keys
                                             or cipher.attachment_keys[attachment["id"]][1] is None)
           for attachment in item.row["attachments"]):
        raise ApiError("Every attachment's key must be shared with the item (attachments2).", field="attachments2")


async def _rekey_attachments(conn: asyncpg.Connection, cipher_id: uuid.UUID, cipher: CipherInput) -> None:
    """The attachments' names and keys as the client encrypted them again; ids of other items'
    attachments change nothing."""
    if cipher.attachment_keys:
        await conn.execute(
            """
            UPDATE attachments a SET file_name = s.file_name, key = coalesce(s.key, a.key)
              FROM jsonb_to_recordset($2::jsonb) AS s(id text, file_name text, key text)
             WHERE a.cipher_id = $1 AND a.id = s.id
            """,
            cipher_id, [{"id": attachment_id, "file_name": name, "key": key}
                        for attachment_id, (name, key) in cipher.attachment_keys.items()])


def _check_personal(cipher: CipherInput) -> None:
    if cipher.organization_id is not None:
        raise ApiError("An organization's items are imported into the organization.", field="organizationId")


async def _require_all(conn: asyncpg.Connection, ids: list[uuid.UUID], user_id: uuid.UUID) -> list[Visible]:
    """Every id names an item the caller reaches, locked; else a 404 that rolls the whole write back."""
    if not ids:
        raise ApiError("No ids given.", field="ids")
    items = await find_visible(conn, ids, user_id, lock=True)
    if len(items) != len(set(ids)):
        raise NotFound("Cipher")
    return items


async def _require_own(conn: asyncpg.Connection, cipher_id: uuid.UUID, user_id: uuid.UUID, *,
                       lock: bool = False) -> Visible:
    """The user's own item; an organization's is as unknown as a missing one."""
    item = await require(conn, cipher_id, user_id, lock=lock)
    if item.row["user_id"] != user_id:
        raise NotFound("Cipher")
    return item


async def _check_collections(conn: asyncpg.Connection, member: Member,
                             collection_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """Every collection given is one the member may put items in; returns all such collections.
    One the member does not see is refused as a missing one."""
    await collections.check_in_organization(conn, member.organization_id, collection_ids)
    editable = await collections.editable_by(conn, member)
    if not set(collection_ids) <= editable:
        raise ApiError(_NO_COLLECTION, field="collectionIds")
    return editable


async def _member_named_in_body(conn: asyncpg.Connection, organization_id: uuid.UUID, user_id: uuid.UUID) -> Member:
    """The caller as a member of the organization an item names; as with a folder named in a
    body, one the caller is not in is an invalid value (400), not a missing page."""
    try:
        return await memberships.require_member(conn, organization_id, user_id)
    except NotFound:
        raise ApiError("Invalid organization.", field="organizationId") from None


async def _sharing_member(conn: asyncpg.Connection, cipher: CipherInput, user_id: uuid.UUID,
                          collection_ids: list[uuid.UUID], adding: int, max_items: int) -> Member:
    """The caller as a member of the organization items move to, in collections it may edit,
    with room in the organization for them."""
    if cipher.organization_id is None:
        raise ApiError("The OrganizationId field is required.", field="organizationId")
    cipher.check_encrypted_for(user_id)
    member = await _member_named_in_body(conn, cipher.organization_id, user_id)
    if not collection_ids:
        raise ApiError("You must select at least one collection.", field="collectionIds")
    await check_organization_room(conn, member.organization_id, adding, max_items)
    await _check_collections(conn, member, collection_ids)
    return member


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


async def _import_collections(conn: asyncpg.Connection, member: Member,
                              sent: list[ImportedCollection]) -> list[uuid.UUID]:
    """The id of each collection sent: an existing one the member may fill, or a new one."""
    editable = {str(collection_id): collection_id for collection_id in await collections.editable_by(conn, member)}
    collection_ids: list[uuid.UUID] = []
    new: list[uuid.UUID] = []
    for collection in sent:
        given = collection.given_id
        collection_id = editable.get(given.lower()) if given is not None else None
        if collection_id is None:
            if not member.can_create_collections:
                raise ApiError(_NO_COLLECTION, field="collections")
            collection_id = (await collections.create(conn, member.organization_id, collection.name,
                                                      collection.external_id))["id"]
            new.append(collection_id)
        collection_ids.append(collection_id)
    await collections.check_in_organization(conn, member.organization_id, collection_ids)
    if new and not member.has_full_access:
        await collections.grant_to_member(conn, member.organization_id, member.id,
                                          [collections.Grant(c, False, False, True) for c in new], replace=False)
    return collection_ids
