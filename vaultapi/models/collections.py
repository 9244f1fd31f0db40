"""The collections and collection_members tables: which member holds which collection, with
which rights; finders, writes and wire shapes.

Who sees a collection is the collection_access view (migration 0006), never these tables on
their own. A write that changes what confirmed members reach tells their devices to sync
(SyncVault); renaming or creating a collection changes no one's reach.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import asyncpg

from vaultapi import body_limits, publish
from vaultapi.body import Body, parse_uuid
from vaultapi.errors import ApiError, NotFound
from vaultapi.models.memberships import Member, selection_json

__all__ = [
    "MAX_NAME_LENGTH",
    "Grant",
    "access_details_json",
    "add_members",
    "check_in_organization",
    "collection_json",
    "create",
    "delete",
    "details_json",
    "editable_by",
    "find_many",
    "grant_to_member",
    "members_of",
    "of_organization",
    "parse_fields",
    "rename",
    "require",
    "set_members",
    "visible_to",
]

Conn = asyncpg.Connection | asyncpg.Pool

MAX_NAME_LENGTH = body_limits.COLLECTION["name"]
MAX_EXTERNAL_ID_LENGTH = body_limits.COLLECTION["externalId"]

# A write that puts items in collections locks them (KEY SHARE) until it commits: a delete of one
# of them then waits, and its trigger sees and clears the new item.
_KEEP = " FOR KEY SHARE"


@dataclass(frozen=True)
class Grant:
    """One access entry: a member's rights in a collection. `id` names the other side: a
    membership in a collection's users, a collection in a member's collections."""

    id: uuid.UUID
    read_only: bool
    hide_passwords: bool
    manage: bool

    @classmethod
    def parse(cls, body: Body, field: str) -> Grant:
        grant = cls(parse_uuid(body.get("id"), field), body.bool("readOnly"), body.bool("hidePasswords"),
                    body.bool("manage"))
        if grant.manage and (grant.read_only or grant.hide_passwords):
            raise ApiError("The Manage property is mutually exclusive and cannot be true while the ReadOnly"
                           " or HidePasswords properties are also true.", field=field)
        return grant

    @classmethod
    def parse_list(cls, body: Body, field: str) -> list[Grant] | None:
        """The entries of a list field; None when the field is missing or null (leave unchanged)."""
        if body.get(field) is None:
            return None
        grants = [cls.parse(entry, field) for entry in body.objects(field)]
        if len({grant.id for grant in grants}) != len(grants):
            raise ApiError("An id is given twice.", field=field)
        return grants


def parse_fields(body: Body, *, required: bool) -> tuple[str | None, str | None]:
    """A collection's name (an EncString; required: on create) and external id, as Bitwarden's
    CollectionRequestModel checks them."""
    return (body.enc_string("name", required=required, max_length=MAX_NAME_LENGTH),
            body.str("externalId", max_length=MAX_EXTERNAL_ID_LENGTH))


# ---- finders -------------------------------------------------------------------------------

async def find_many(conn: Conn, organization_id: uuid.UUID, ids: Iterable[uuid.UUID]) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM collections WHERE organization_id = $1 AND id = ANY($2::uuid[])",
                            organization_id, list(ids))


async def require(conn: Conn, organization_id: uuid.UUID, collection_id: uuid.UUID) -> asyncpg.Record:
    row = await conn.fetchrow("SELECT * FROM collections WHERE organization_id = $1 AND id = $2",
                              organization_id, collection_id)
    if row is None:
        raise NotFound("Collection")
    return row


async def of_organization(conn: Conn, organization_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM collections WHERE organization_id = $1 ORDER BY created_at, id",
                            organization_id)


async def visible_to(conn: Conn, user_id: uuid.UUID, organization_id: uuid.UUID | None = None) -> list[asyncpg.Record]:
    """The collections the user sees (in one organization, or in all), with the user's rights."""
    return await conn.fetch(
        """
        SELECT c.*, a.read_only, a.hide_passwords, a.manage, a.assigned
          FROM collection_access a JOIN collections c ON c.id = a.collection_id
         WHERE a.user_id = $1 AND ($2::uuid IS NULL OR a.organization_id = $2)
         ORDER BY c.organization_id, c.created_at, c.id
        """, user_id, organization_id)


async def members_of(conn: Conn, collection_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[asyncpg.Record]]:
    """Each collection's grants to members."""
    rows = await conn.fetch(
        "SELECT * FROM collection_members WHERE collection_id = ANY($1::uuid[]) ORDER BY membership_id",
        collection_ids)
    grants: dict[uuid.UUID, list[asyncpg.Record]] = {collection_id: [] for collection_id in collection_ids}
    for row in rows:
        grants[row["collection_id"]].append(row)
    return grants


async def editable_by(conn: Conn, member: Member) -> set[uuid.UUID]:
    """The collections the member may put items in and take them out of: every one with full
    access, else those it manages or may edit."""
    rows = await conn.fetch(
        "SELECT collection_id FROM collection_access WHERE user_id = $1 AND organization_id = $2"
        " AND (manage OR NOT read_only)", member.user_id, member.organization_id)
    return {row["collection_id"] for row in rows}


async def check_in_organization(conn: asyncpg.Connection, organization_id: uuid.UUID,
                                collection_ids: Iterable[uuid.UUID]) -> None:
    """Every id names a collection of the organization, which stays until the write commits."""
    wanted = set(collection_ids)
    if not wanted:
        return
    found = await conn.fetch("SELECT id FROM collections WHERE organization_id = $1 AND id = ANY($2::uuid[])"
                             + _KEEP, organization_id, list(wanted))
    if len(found) != len(wanted):
        raise ApiError("Specified CollectionId does not exist on the specified Organization.",
                       field="collectionIds")


# ---- writes: call them inside publish.write -------------------------------------------------

async def create(conn: asyncpg.Connection, organization_id: uuid.UUID, name: str,
                 external_id: str | None) -> asyncpg.Record:
    return await conn.fetchrow(
        "INSERT INTO collections (organization_id, name, external_id) VALUES ($1, $2, $3) RETURNING *",
        organization_id, name, external_id)


async def rename(conn: asyncpg.Connection, collection: asyncpg.Record, name: str | None,
                 external_id: str | None) -> asyncpg.Record:
    """A new name (None keeps it) and external id; the members read it on their next sync."""
    return await conn.fetchrow(
        "UPDATE collections SET name = coalesce($2, name), external_id = $3, updated_at = now()"
        " WHERE id = $1 RETURNING *", collection["id"], name, external_id)


async def set_members(conn: asyncpg.Connection, collection: asyncpg.Record, grants: list[Grant]) -> None:
    """The collection's members are exactly these; SyncVault to each confirmed member whose
    rights in it changed."""
    await _check_memberships(conn, collection["organization_id"], [grant.id for grant in grants])
    removed = await conn.fetch(
        "DELETE FROM collection_members WHERE collection_id = $1 AND membership_id <> ALL($2::uuid[])"
        " RETURNING membership_id", collection["id"], [grant.id for grant in grants])
    changed = await _upsert(conn, collection["organization_id"], [(collection["id"], grant) for grant in grants])
    await _access_changed(conn, changed | {row["membership_id"] for row in removed})


async def add_members(conn: asyncpg.Connection, organization_id: uuid.UUID, collection_ids: list[uuid.UUID],
                      grants: list[Grant]) -> None:
    """These members get (or get again, with these rights) each of the collections; SyncVault to
    the confirmed ones whose rights changed."""
    await _check_memberships(conn, organization_id, [grant.id for grant in grants])
    changed = await _upsert(conn, organization_id, [(collection_id, grant) for collection_id in collection_ids
                                                    for grant in grants])
    await _access_changed(conn, changed)


async def grant_to_member(conn: asyncpg.Connection, organization_id: uuid.UUID, membership_id: uuid.UUID,
                          grants: list[Grant], *, replace: bool) -> None:
    """The member's collections: these (replace), or these besides its others; SyncVault when a
    confirmed member's rights changed."""
    await check_in_organization(conn, organization_id, [grant.id for grant in grants])
    removed = []
    if replace:
        removed = await conn.fetch(
            "DELETE FROM collection_members WHERE membership_id = $1 AND collection_id <> ALL($2::uuid[])"
            " RETURNING membership_id", membership_id, [grant.id for grant in grants])
    changed = await _upsert(conn, organization_id, [(grant.id, Grant(membership_id, grant.read_only,
                                                                      grant.hide_passwords, grant.manage))
                                                    for grant in grants])
    await _access_changed(conn, changed | {row["membership_id"] for row in removed})


async def delete(conn: asyncpg.Connection, organization_id: uuid.UUID, ids: list[uuid.UUID]) -> None:
    """The collections, in one statement; their items leave them (the collections_deleted
    trigger), and their members' devices sync."""
    holders = await conn.fetch(
        "SELECT DISTINCT membership_id FROM collection_members WHERE collection_id = ANY($1::uuid[])", ids)
    deleted = await conn.fetch(
        "DELETE FROM collections WHERE organization_id = $1 AND id = ANY($2::uuid[]) RETURNING id",
        organization_id, ids)
    if len(deleted) != len(set(ids)):
        raise NotFound("Collection")
    await _access_changed(conn, {row["membership_id"] for row in holders})


async def _check_memberships(conn: asyncpg.Connection, organization_id: uuid.UUID,
                             membership_ids: list[uuid.UUID]) -> None:
    found = await conn.fetchval(
        "SELECT count(*) FROM memberships WHERE organization_id = $1 AND id = ANY($2::uuid[])",
        organization_id, membership_ids)
    if found != len(set(membership_ids)):
        raise ApiError("A member named is not in the organization.", field="users")


async def _upsert(conn: asyncpg.Connection, organization_id: uuid.UUID,
                  entries: list[tuple[uuid.UUID, Grant]]) -> set[uuid.UUID]:
    """Write the grants (collection, member grant); returns the members whose rights changed."""
    if not entries:
        return set()
    rows = await conn.fetch(
        """
        INSERT INTO collection_members AS g (organization_id, collection_id, membership_id, read_only,
                                             hide_passwords, manage)
        SELECT $1, e.collection_id, e.membership_id, e.read_only, e.hide_passwords, e.manage
          FROM jsonb_to_recordset($2::jsonb)
            AS e(collection_id uuid, membership_id uuid, read_only boolean, hide_passwords boolean, manage boolean)
        ON CONFLICT (collection_id, membership_id) DO UPDATE
           SET read_only = excluded.read_only, hide_passwords = excluded.hide_passwords, manage = excluded.manage
         WHERE (g.read_only, g.hide_passwords, g.manage)
               IS DISTINCT FROM (excluded.read_only, excluded.hide_passwords, excluded.manage)
        RETURNING membership_id
        """,
        organization_id, [{"collection_id": str(collection_id), "membership_id": str(grant.id),
                           "read_only": grant.read_only, "hide_passwords": grant.hide_passwords,
                           "manage": grant.manage} for collection_id, grant in entries])
    return {row["membership_id"] for row in rows}


async def _access_changed(conn: asyncpg.Connection, membership_ids: set[uuid.UUID]) -> None:
    if not membership_ids:
        return
    users = await conn.fetch("SELECT user_id FROM memberships WHERE id = ANY($1::uuid[]) AND status = 2",
                             list(membership_ids))
    await publish.access_changed(conn, [row["user_id"] for row in users])


# ---- wire shapes ---------------------------------------------------------------------------

def collection_json(row: asyncpg.Record, kind: str = "collection") -> dict[str, Any]:
    """CollectionResponseModel; `kind` is the object name of the shapes that extend it."""
    return {
        "id": str(row["id"]),
        "organizationId": str(row["organization_id"]),
        "name": row["name"],
        "externalId": row["external_id"],
        # 0: a shared collection; pgwarden has no per-member "My items" collections
        "type": 0,
        "defaultUserCollectionEmail": None,
        "object": kind,
    }


def details_json(row: asyncpg.Record) -> dict[str, Any]:
    """A collection the user sees, with the user's rights (CollectionDetailsResponseModel);
    `row` is one of visible_to's."""
    return {
        **collection_json(row, "collectionDetails"),
        "readOnly": row["read_only"],
        "hidePasswords": row["hide_passwords"],
        "manage": row["manage"],
    }


def access_details_json(row: asyncpg.Record, grants: list[asyncpg.Record],
                        viewer: Member) -> dict[str, Any]:
    """A collection with who holds it (CollectionAccessDetailsResponseModel); assigned and the
    rights are the viewer's own grant."""
    own = next((grant for grant in grants if grant["membership_id"] == viewer.id), None)
    return {
        **collection_json(row, "collectionAccessDetails"),
        "assigned": own is not None,
        "readOnly": bool(own and own["read_only"]),
        "hidePasswords": bool(own and own["hide_passwords"]),
        "manage": bool(own and own["manage"]),
        "unmanaged": not any(grant["manage"] for grant in grants),
        "groups": [],
        "users": [selection_json(grant, grant["membership_id"]) for grant in grants],
    }
