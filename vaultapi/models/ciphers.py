"""The ciphers table: what a client may send, its wire shapes, finders and writes.

The encrypted fields are the client's business: they are kept as the JSON the client sent
(column data) and handed back unchanged. Placement (folder, favorite) is per user.

An item belongs to a user, or to an organization (user_id null) and then names its collections
in collection_ids. Who reaches an item, with which rights, is the cipher_access view (migration
0006): every read and every write here goes through it, so an item the caller may not see is a
404, like a missing one.

Each write is one statement, so the triggers publish one event for it: a statement that
touches one item publishes that item's event (SyncCipherCreate, SyncCipherUpdate,
SyncLoginDelete), one that touches several publishes a single bulk event per owner. An
organization's item is published with the organization and no user.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from core import capabilities
from db.events import PushType
from vaultapi import publish
from vaultapi.body import Body
from vaultapi.dates import iso, parse_iso
from vaultapi.errors import ApiError, NotFound
from vaultapi.models import collections, folders, memberships
from vaultapi.models.collections import MAX_NAME_LENGTH
from vaultapi.models.memberships import Member

__all__ = [
    "CipherInput",
    "OrganizationImport",
    "Visible",
    "VaultImport",
    "check_folder",
    "cipher_json",
    "create",
    "delete",
    "find_by_user",
    "find_visible",
    "import_organization",
    "import_vault",
    "mini_details_json",
    "move",
    "of_organization",
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
_COMMON_FIELDS = {"name": str, "notes": str, "fields": list, "passwordHistory": list}

_NO_EDIT = "You do not have permissions to edit this."
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

    @classmethod
    def parse(cls, body: Body) -> CipherInput:
        cipher_type = body.int("type", required=True)
        if cipher_type not in TYPE_FIELDS:
            raise ApiError(f"Unknown cipher type {cipher_type}.", field="type")
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
            organization_id=body.uuid("organizationId"),
            encrypted_for=body.uuid("encryptedFor"),
        )

    def check_not_stale(self, row: asyncpg.Record) -> None:
        """Refuse an edit made on an older copy than the stored one (a second of slack)."""
        known = self.last_known_revision_date
        if known is not None and (row["revision_date"] - known).total_seconds() > 1:
            raise ApiError("The client copy of this cipher is out of date. Resync the client and try again.")

    def check_encrypted_for(self, user_id: uuid.UUID) -> None:
        if self.encrypted_for is not None and self.encrypted_for != user_id:
            raise ApiError("Cipher was not encrypted for the current user. Please try again.", field="encryptedFor")


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
        return cls(items=items, folders=folder_bodies,
                   folder_of_item=dict(_relationships(body, "folderRelationships", len(items), len(folder_bodies))))


@dataclass(frozen=True)
class OrganizationImport:
    """An import into an organization: items, collections (new, or existing ones by id), and
    which item goes in which collections."""

    items: list[CipherInput]
    collections: list[Body]
    collections_of_item: dict[int, list[int]]  # item index -> collection indexes

    @classmethod
    def parse(cls, body: Body) -> OrganizationImport:
        items = [CipherInput.parse(item) for item in body.objects("ciphers")]
        collection_bodies = list(body.objects("collections"))
        collections_of_item: dict[int, list[int]] = {}
        for item, collection in _relationships(body, "collectionRelationships", len(items), len(collection_bodies)):
            collections_of_item.setdefault(item, []).append(collection)
        return cls(items=items, collections=collection_bodies, collections_of_item=collections_of_item)


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
        "data": json.dumps({**(type_data or {}), **{field: data.get(field) for field in _COMMON_FIELDS}}),
        "key": row["key"],
        "reprompt": row["reprompt"],
        "attachments": None,
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

async def find_by_user(conn: Conn, user_id: uuid.UUID) -> list[Visible]:
    """Every item the user reaches, oldest first. Call it in a transaction: two reads, one view.

    The rights first, then the rows by id: the planner cannot know how many items one user
    reaches, and would read the whole table to join them."""
    access = {row["cipher_id"]: row for row in
              await conn.fetch("SELECT * FROM cipher_access WHERE user_id = $1", user_id)}
    rows = await conn.fetch("SELECT * FROM ciphers WHERE id = ANY($1::uuid[]) ORDER BY creation_date, id",
                            list(access))
    return [Visible.of(row, access[row["id"]]) for row in rows]


_ONE_VISIBLE = """
SELECT c.*, a.read_only AS access_read_only, a.hide_passwords AS access_hide_passwords,
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


async def of_organization(conn: Conn, organization_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM ciphers WHERE organization_id = $1 ORDER BY creation_date, id",
                            organization_id)


async def check_folder(conn: Conn, folder_id: uuid.UUID | None, user_id: uuid.UUID) -> None:
    """The folder an item is placed in is the caller's, and stays until the write commits."""
    if folder_id is not None and await folders.find_by_id_and_user(conn, folder_id, user_id, keep=True) is None:
        raise ApiError("Invalid folder.", field="folderId")


# ---- writes: call them inside publish.write, whose transaction a refusal rolls back ----------

async def create(conn: asyncpg.Connection, user_id: uuid.UUID, cipher: CipherInput,
                 collection_ids: list[uuid.UUID]) -> Visible:
    """SyncCipherCreate: the user's item, or an organization's in the collections given."""
    cipher.check_encrypted_for(user_id)
    await check_folder(conn, cipher.folder_id, user_id)
    if cipher.organization_id is None:
        if collection_ids:
            raise ApiError("Only an organization's item goes in collections.", field="collectionIds")
        owner, organization_id = user_id, None
    else:
        member = await _member_named_in_body(conn, cipher.organization_id, user_id)
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


async def share(conn: asyncpg.Connection, cipher_id: uuid.UUID, user_id: uuid.UUID, cipher: CipherInput,
                collection_ids: list[uuid.UUID]) -> Visible:
    """The user's own item becomes the organization's, re-encrypted by the client under the
    organization key, in the collections given. One statement: the owner's SyncLoginDelete and
    the organization's SyncCipherCreate."""
    item = await require(conn, cipher_id, user_id, lock=True)
    if item.row["user_id"] != user_id:
        raise NotFound("Cipher")
    member = await _sharing_member(conn, cipher, user_id, collection_ids)
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
    return await require(conn, cipher_id, user_id)


async def share_many(conn: asyncpg.Connection, user_id: uuid.UUID, items: dict[uuid.UUID, CipherInput],
                     collection_ids: list[uuid.UUID]) -> list[asyncpg.Record]:
    """Several of the user's own items become one organization's, in one statement (bulk events
    for the owner and the organization). Returns each item's id and revision date."""
    organizations = {cipher.organization_id for cipher in items.values()}
    if len(organizations) != 1:
        raise ApiError("The items must all go to one organization.", field="ciphers")
    member = None
    for cipher in items.values():
        member = await _sharing_member(conn, cipher, user_id, collection_ids) if member is None else member
        cipher.check_encrypted_for(user_id)
    assert member is not None
    owned = await _require_all(conn, list(items), user_id)
    if any(item.row["user_id"] != user_id for item in owned):
        raise ApiError("Trying to share ciphers that you do not own.")
    for item in owned:
        items[item.id].check_not_stale(item.row)
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


async def import_vault(conn: asyncpg.Connection, user_id: uuid.UUID, vault: VaultImport) -> None:
    """Folders and items in two statements and one SyncVault, however many or few there are."""
    await publish.mark_bulk_change(conn)
    for item in vault.items:
        _check_personal(item)
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


async def import_organization(conn: asyncpg.Connection, member: Member, vault: OrganizationImport) -> None:
    """Collections and items into the organization, one statement each, and a SyncVault to the
    importer. New collections need the right to create them; an importer without full access
    manages the collections it makes, and may fill only those it may edit."""
    await publish.mark_bulk_change(conn)
    for item in vault.items:
        if item.organization_id not in (None, member.organization_id):
            raise ApiError("Every item must be the organization's.", field="ciphers")
    collection_ids = await _import_collections(conn, member, vault.collections)
    rows = [
        {"type": item.type, "data": item.data, "key": item.key, "reprompt": item.reprompt,
         "collection_ids": _unique([collection_ids[c] for c in vault.collections_of_item.get(index, [])])}
        for index, item in enumerate(vault.items)
    ]
    if rows:
        await conn.execute(
            """
            INSERT INTO ciphers (organization_id, type, data, key, reprompt, collection_ids)
            SELECT $1, type, data, key, reprompt, ARRAY(SELECT jsonb_array_elements_text(collection_ids))::uuid[]
              FROM jsonb_to_recordset($2::jsonb)
                AS c(type smallint, data jsonb, key text, reprompt smallint, collection_ids jsonb)
            """,
            member.organization_id, [{**row, "collection_ids": [str(c) for c in row["collection_ids"]]}
                                     for row in rows])
    await publish.user_event(conn, member.user_id, PushType.SYNC_VAULT)


# ---- private -------------------------------------------------------------------------------

def _relationships(body: Body, field: str, items: int, targets: int) -> list[tuple[int, int]]:
    pairs = []
    for pair in body.objects(field):
        item, target = pair.int("key", required=True), pair.int("value", required=True)
        if not (0 <= item < items and 0 <= target < targets):
            raise ApiError("A relationship points outside the import.", field=field)
        pairs.append((item, target))
    return pairs


def _folder_placement(user_id: uuid.UUID, folder_id: uuid.UUID | None) -> dict[str, str]:
    """The user's entry in the folders column: {user id: folder id}, none for no folder."""
    return {str(user_id): str(folder_id)} if folder_id else {}


def _favorite_placement(user_id: uuid.UUID, favorite: bool) -> dict[str, bool]:
    return {str(user_id): True} if favorite else {}


def _unique(ids: list[uuid.UUID]) -> list[uuid.UUID]:
    return list(dict.fromkeys(ids))


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
                          collection_ids: list[uuid.UUID]) -> Member:
    """The caller as a member of the organization an item moves to, in collections it may edit."""
    if cipher.organization_id is None:
        raise ApiError("The OrganizationId field is required.", field="organizationId")
    cipher.check_encrypted_for(user_id)
    member = await _member_named_in_body(conn, cipher.organization_id, user_id)
    if not collection_ids:
        raise ApiError("You must select at least one collection.", field="collectionIds")
    await _check_collections(conn, member, collection_ids)
    return member


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


async def _import_collections(conn: asyncpg.Connection, member: Member, sent: list[Body]) -> list[uuid.UUID]:
    """The id of each collection sent: an existing one the member may fill, or a new one."""
    editable = {str(collection_id): collection_id for collection_id in await collections.editable_by(conn, member)}
    collection_ids: list[uuid.UUID] = []
    new: list[uuid.UUID] = []
    for collection in sent:
        given = collection.get("id")
        collection_id = editable.get(given.lower()) if isinstance(given, str) else None
        if collection_id is None:
            if not member.can_create_collections:
                raise ApiError(_NO_COLLECTION, field="collections")
            name = collection.str("name", required=True, max_length=MAX_NAME_LENGTH)
            external_id = collection.str("externalId", max_length=collections.MAX_EXTERNAL_ID_LENGTH)
            collection_id = (await collections.create(conn, member.organization_id, name, external_id))["id"]
            new.append(collection_id)
        collection_ids.append(collection_id)
    await collections.check_in_organization(conn, member.organization_id, collection_ids)
    if new and not member.has_full_access:
        await collections.grant_to_member(conn, member.organization_id, member.id,
                                          [collections.Grant(c, False, False, True) for c in new], replace=False)
    return collection_ids
