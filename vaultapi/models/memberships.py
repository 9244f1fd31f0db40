"""The memberships table: a user's place in an organization, what the role allows, finders,
writes and wire shapes.

A membership's id is what the clients call the organization user id. An invitation to an
address without an account is a membership with that email and no user, which the account
takes when it is registered (accept_invitations). pgwarden sends no mail, so there is no
acceptance step: an invited account is Accepted at once, and an admin confirms it by wrapping the
organization key to its public key.

Roles, as Bitwarden has them with the fixed collection management of
organizations.COLLECTION_MANAGEMENT:

- Owners and Admins reach every item and collection and manage members; only Owners act on
  Owners, only Owners and Admins on Admins and Custom members.
- A Custom member has what its permissions grant: manageUsers (members of type User only),
  createNewCollections, editAnyCollection (which also reaches every item: access_all),
  deleteAnyCollection, accessImportExport. The other permissions are kept but open nothing:
  their features are off (core.capabilities).
- Users reach the collections granted to them.

Memberships have no trigger: a change a member's devices must hear of is published here, through
vaultapi.publish (SyncOrgKeys when the member gains or loses the organization or its key,
SyncVault when what the member reaches changes).
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import asyncpg

from vaultapi import publish
from vaultapi.dates import iso
from vaultapi.errors import ApiError, NotFound

__all__ = [
    "PERMISSIONS",
    "Member",
    "MemberStatus",
    "MemberType",
    "accept",
    "accept_invitations",
    "access_all_of",
    "check_owner_remains",
    "confirm",
    "create_owner",
    "details_json",
    "find_in_organization",
    "find_own",
    "grants_of",
    "invite",
    "list_json",
    "lock_emails",
    "of_organization",
    "profile_rows",
    "public_key_for",
    "remove",
    "require_member",
    "require_targets",
    "restore",
    "revoke",
    "selection_json",
    "update",
]

Conn = asyncpg.Connection | asyncpg.Pool


class MemberType(enum.IntEnum):
    OWNER = 0
    ADMIN = 1
    USER = 2
    # 3, Manager, is retired by Bitwarden
    CUSTOM = 4


class MemberStatus(enum.IntEnum):
    REVOKED = -1
    INVITED = 0
    ACCEPTED = 1
    CONFIRMED = 2


#: The permissions of a Custom member, as the clients name them.
PERMISSIONS = (
    "accessEventLogs", "accessImportExport", "accessReports", "createNewCollections", "editAnyCollection",
    "deleteAnyCollection", "manageGroups", "managePolicies", "manageSso", "manageUsers", "manageResetPassword",
    "manageScim",
)


@dataclass(frozen=True)
class Member:
    """A confirmed member of an enabled organization, acting in it."""

    id: uuid.UUID
    organization_id: uuid.UUID
    user_id: uuid.UUID
    type: MemberType
    access_all: bool
    permissions: frozenset[str]

    @classmethod
    def of(cls, row: asyncpg.Record) -> Member:
        granted = frozenset(name for name, on in (row["permissions"] or {}).items() if on is True)
        return cls(row["id"], row["organization_id"], row["user_id"], MemberType(row["type"]),
                   row["access_all"], granted if row["type"] == MemberType.CUSTOM else frozenset())

    @property
    def is_owner(self) -> bool:
        return self.type == MemberType.OWNER

    @property
    def is_admin(self) -> bool:
        """Owner or Admin."""
        return self.type in (MemberType.OWNER, MemberType.ADMIN)

    @property
    def has_full_access(self) -> bool:
        """Every item and collection of the organization (the rule of member_access)."""
        return self.is_admin or self.access_all

    @property
    def can_manage_users(self) -> bool:
        return self.is_admin or "manageUsers" in self.permissions

    @property
    def can_create_collections(self) -> bool:
        return self.is_admin or "createNewCollections" in self.permissions

    @property
    def can_edit_any_collection(self) -> bool:
        return self.is_admin or "editAnyCollection" in self.permissions

    @property
    def can_delete_any_collection(self) -> bool:
        return self.is_admin or "deleteAnyCollection" in self.permissions

    @property
    def can_view_all_collections(self) -> bool:
        return self.can_edit_any_collection or self.can_delete_any_collection

    @property
    def can_import(self) -> bool:
        return self.is_admin or "accessImportExport" in self.permissions

    def may_manage(self, member_type: int) -> bool:
        """Whether this member may invite, edit, confirm, revoke or remove one of that type."""
        if member_type == MemberType.OWNER:
            return self.is_owner
        if member_type == MemberType.USER:
            return self.can_manage_users
        return self.is_admin


def access_all_of(member_type: int, permissions: dict[str, bool] | None) -> bool:
    """A Custom member who may edit any collection reaches every item, as an Admin does."""
    return member_type == MemberType.CUSTOM and bool((permissions or {}).get("editAnyCollection"))


# ---- finders -------------------------------------------------------------------------------

_MEMBER = """
SELECT m.* FROM memberships m JOIN organizations o ON o.id = m.organization_id
 WHERE m.organization_id = $1 AND m.user_id = $2 AND m.status = 2 AND o.enabled
"""


async def require_member(conn: Conn, organization_id: uuid.UUID, user_id: uuid.UUID,
                         allowed: Callable[[Member], bool] | None = None, *, lock: bool = False) -> Member:
    """The caller as a confirmed member of the organization, allowed what is asked; else the
    organization is as unknown as a missing one.

    lock: hold the organization until the transaction ends, so that changes to its members run
    one after the other (the last owner cannot leave twice at once)."""
    row = await conn.fetchrow(_MEMBER + (" FOR NO KEY UPDATE OF o" if lock else ""), organization_id, user_id)
    if row is None:
        raise NotFound("Organization")
    member = Member.of(row)
    if allowed is not None and not allowed(member):
        raise NotFound("Organization")
    return member


_WITH_ACCOUNT = """
SELECT m.*, coalesce(u.email, m.email) AS member_email, u.name AS member_name,
       u.avatar_color AS member_avatar_color, u.public_key AS member_public_key,
       coalesce(EXISTS (SELECT 1 FROM jsonb_each(u.two_factor_providers) p
                         WHERE (p.value ->> 'enabled')::boolean), false) AS member_two_factor_enabled
  FROM memberships m LEFT JOIN users u ON u.id = m.user_id
"""


async def find_own(conn: Conn, organization_id: uuid.UUID, user_id: uuid.UUID) -> asyncpg.Record | None:
    """The user's membership of the organization, whatever its status."""
    return await conn.fetchrow(_WITH_ACCOUNT + " WHERE m.organization_id = $1 AND m.user_id = $2",
                               organization_id, user_id)


async def of_organization(conn: Conn, organization_id: uuid.UUID) -> list[asyncpg.Record]:
    """Every membership of the organization, with its account's email and name."""
    return await conn.fetch(_WITH_ACCOUNT + " WHERE m.organization_id = $1 ORDER BY m.created_at, m.id",
                            organization_id)


async def find_in_organization(conn: Conn, organization_id: uuid.UUID,
                               ids: Iterable[uuid.UUID]) -> list[asyncpg.Record]:
    """The memberships of the organization among ids; the others are not there."""
    return await conn.fetch(_WITH_ACCOUNT + " WHERE m.organization_id = $1 AND m.id = ANY($2::uuid[])"
                            " ORDER BY m.created_at, m.id", organization_id, list(ids))


async def require_targets(conn: Conn, actor: Member, ids: list[uuid.UUID]) -> list[asyncpg.Record]:
    """The memberships the actor acts on, all of them in its organization and of a type it may
    manage; else a 404 as for a missing one."""
    if not ids:
        raise ApiError("No ids given.", field="ids")
    rows = await find_in_organization(conn, actor.organization_id, ids)
    if len(rows) != len(set(ids)) or not all(actor.may_manage(row["type"]) for row in rows):
        raise NotFound("User")
    return rows


async def profile_rows(conn: Conn, user_id: uuid.UUID) -> list[asyncpg.Record]:
    """The user's confirmed memberships, with what the profile says of their organizations."""
    return await conn.fetch(
        """
        SELECT m.*, o.name AS org_name, o.enabled AS org_enabled, o.public_key AS org_public_key,
               o.private_key AS org_private_key
          FROM memberships m JOIN organizations o ON o.id = m.organization_id
         WHERE m.user_id = $1 AND m.status = 2
         ORDER BY o.created_at, o.id
        """, user_id)


async def public_key_for(conn: Conn, viewer_id: uuid.UUID, user_id: uuid.UUID) -> str | None:
    """The user's public key, if the viewer may read it: the user itself, or a member who may
    manage users of an organization the user has a place in."""
    if viewer_id != user_id:
        managing = [row["organization_id"] for row in await conn.fetch(
            "SELECT m.* FROM memberships m JOIN organizations o ON o.id = m.organization_id"
            " WHERE m.user_id = $1 AND m.status = 2 AND o.enabled", viewer_id) if Member.of(row).can_manage_users]
        shared = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM memberships WHERE user_id = $1 AND organization_id = ANY($2::uuid[]))",
            user_id, managing)
        if not shared:
            return None
    return await conn.fetchval("SELECT public_key FROM users WHERE id = $1", user_id)


async def grants_of(conn: Conn, membership_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[dict[str, Any]]]:
    """Each membership's collections, as the member endpoints list them."""
    rows = await conn.fetch(
        "SELECT * FROM collection_members WHERE membership_id = ANY($1::uuid[]) ORDER BY collection_id",
        membership_ids)
    grants: dict[uuid.UUID, list[dict[str, Any]]] = {membership_id: [] for membership_id in membership_ids}
    for row in rows:
        grants[row["membership_id"]].append(selection_json(row, row["collection_id"]))
    return grants


async def check_owner_remains(conn: asyncpg.Connection, organization_id: uuid.UUID,
                              leaving: Iterable[uuid.UUID]) -> None:
    """Refuse a change that would leave the organization without a confirmed owner. Call it with
    the organization locked (require_member(..., lock=True))."""
    others = await conn.fetchval(
        "SELECT count(*) FROM memberships WHERE organization_id = $1 AND type = 0 AND status = 2"
        " AND id <> ALL($2::uuid[])", organization_id, list(leaving))
    if others == 0:
        raise ApiError("Organization must have at least one confirmed owner.")


# ---- writes: call them inside publish.write -------------------------------------------------

async def lock_emails(conn: asyncpg.Connection, emails: Iterable[str]) -> None:
    """Invitations and registrations of the same address take turns, so an invitation is never
    left waiting for an account that registered at the same moment."""
    for email in sorted({email.strip().lower() for email in emails}):
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('pgwarden.invitation:' || $1, 0))", email)


async def create_owner(conn: asyncpg.Connection, organization_id: uuid.UUID, user_id: uuid.UUID,
                       key: str) -> asyncpg.Record:
    """The creator of an organization: its confirmed Owner, holding its key. SyncOrgKeys."""
    row = await conn.fetchrow(
        "INSERT INTO memberships (organization_id, user_id, type, status, key) VALUES ($1, $2, 0, 2, $3)"
        " RETURNING *", organization_id, user_id, key)
    await publish.org_keys_changed(conn, [user_id])
    return row


async def invite(conn: asyncpg.Connection, organization_id: uuid.UUID, emails: list[str],
                 member_type: MemberType, permissions: dict[str, bool] | None, *,
                 by_mail: bool = False) -> list[asyncpg.Record]:
    """A membership per address (lowercase) not yet in the organization; addresses already in it
    are left as they are. Without mail (`by_mail` false) an existing account is Accepted at once,
    as there is nothing to accept by; with mail every address stays Invited until its invitation
    is accepted (:func:`accept`) or it registers. Returns (id, email, has_account) of each made.
    Publishes nothing: a member has nothing to sync until confirmed."""
    await lock_emails(conn, emails)
    return await conn.fetch(
        """
        INSERT INTO memberships AS m (organization_id, user_id, email, type, status, access_all, permissions)
        SELECT $1, CASE WHEN $6 THEN NULL ELSE u.id END, CASE WHEN u.id IS NULL OR $6 THEN e.email END, $3,
               CASE WHEN u.id IS NULL OR $6 THEN 0 ELSE 1 END, $4, $5
          FROM unnest($2::text[]) AS e(email)
          LEFT JOIN users u ON lower(u.email) = e.email
         WHERE NOT EXISTS (SELECT 1 FROM memberships o WHERE o.organization_id = $1 AND o.user_id = u.id)
        ON CONFLICT DO NOTHING
        RETURNING m.id, coalesce(m.email, (SELECT email FROM users WHERE id = m.user_id)) AS email,
                  m.user_id IS NOT NULL OR EXISTS (SELECT 1 FROM users WHERE lower(email) = m.email) AS has_account
        """,
        organization_id, emails, int(member_type), access_all_of(member_type, permissions), permissions, by_mail)


async def accept(conn: asyncpg.Connection, organization_id: uuid.UUID, membership_id: uuid.UUID,
                 user_id: uuid.UUID, email: str) -> None:
    """The account of the invited address takes its invitation: Accepted, waiting to be confirmed."""
    await lock_emails(conn, [email])
    accepted = await conn.fetchval(
        """
        UPDATE memberships SET user_id = $3, email = NULL, status = 1, updated_at = now()
         WHERE id = $2 AND organization_id = $1 AND email = $4 AND status = 0
           AND NOT EXISTS (SELECT 1 FROM memberships o WHERE o.organization_id = $1 AND o.user_id = $3)
        RETURNING id
        """,
        organization_id, membership_id, user_id, email.strip().lower())
    if accepted is None:
        raise ApiError("Invitation is invalid or was already accepted.")


async def accept_invitations(conn: asyncpg.Connection, user_id: uuid.UUID, email: str) -> None:
    """A new account takes the invitations of its address: each becomes Accepted (a revoked
    one, Accepted once restored)."""
    await conn.execute(
        """
        UPDATE memberships
           SET user_id = $1, email = NULL, updated_at = now(),
               status = CASE WHEN status = 0 THEN 1 ELSE status END,
               status_before_revoke = CASE WHEN status_before_revoke = 0 THEN 1 ELSE status_before_revoke END
         WHERE email = $2 AND user_id IS NULL
        """, user_id, email.strip().lower())


async def confirm(conn: asyncpg.Connection, target: asyncpg.Record, key: str) -> None:
    """An accepted member gets the organization key, wrapped to its public key. SyncOrgKeys."""
    status = MemberStatus(target["status"])
    if status == MemberStatus.INVITED:
        raise ApiError("User must accept the invitation before being confirmed.")
    if status == MemberStatus.CONFIRMED:
        raise ApiError("User already confirmed.")
    if status != MemberStatus.ACCEPTED:
        raise ApiError("User is not in a state to be confirmed.")
    await conn.execute("UPDATE memberships SET status = 2, key = $2, updated_at = now() WHERE id = $1",
                       target["id"], key)
    await publish.org_keys_changed(conn, [target["user_id"]])


async def update(conn: asyncpg.Connection, target: asyncpg.Record, member_type: MemberType,
                 permissions: dict[str, bool] | None) -> None:
    """The member's role; a confirmed member's devices sync (SyncVault) when it changed."""
    changed = await conn.fetchval(
        """
        UPDATE memberships SET type = $2, permissions = $3, access_all = $4, updated_at = now()
         WHERE id = $1 AND (type, permissions, access_all) IS DISTINCT FROM ($2, $3, $4)
        RETURNING id
        """, target["id"], int(member_type), permissions, access_all_of(member_type, permissions))
    if changed and target["status"] == MemberStatus.CONFIRMED:
        await publish.access_changed(conn, [target["user_id"]])


async def revoke(conn: asyncpg.Connection, target: asyncpg.Record) -> None:
    """Out of the organization's reach until restored. SyncOrgKeys."""
    if target["status"] == MemberStatus.REVOKED:
        raise ApiError("Already revoked.")
    await conn.execute(
        "UPDATE memberships SET status = -1, status_before_revoke = status, updated_at = now() WHERE id = $1",
        target["id"])
    await _org_keys_changed(conn, target)


async def restore(conn: asyncpg.Connection, target: asyncpg.Record) -> None:
    """Back to where the member was when revoked. SyncOrgKeys."""
    if target["status"] != MemberStatus.REVOKED:
        raise ApiError("Already active.")
    await conn.execute(
        "UPDATE memberships SET status = status_before_revoke, status_before_revoke = NULL, updated_at = now()"
        " WHERE id = $1", target["id"])
    await _org_keys_changed(conn, target)


async def remove(conn: asyncpg.Connection, target: asyncpg.Record) -> None:
    """Out of the organization, with its collection grants. SyncOrgKeys, published first: the
    member's revision date then moves past the organization's while the membership still counts
    (pgwarden_touch_users), so leaving never moves it back."""
    await _org_keys_changed(conn, target)
    await conn.execute("DELETE FROM memberships WHERE id = $1", target["id"])


async def _org_keys_changed(conn: asyncpg.Connection, target: asyncpg.Record) -> None:
    if target["user_id"] is not None:
        await publish.org_keys_changed(conn, [target["user_id"]])


# ---- wire shapes ---------------------------------------------------------------------------

def selection_json(row: asyncpg.Record, selection_id: uuid.UUID) -> dict[str, Any]:
    """One grant as the clients list it (SelectionReadOnlyResponseModel: no object key)."""
    return {"id": str(selection_id), "readOnly": row["read_only"], "hidePasswords": row["hide_passwords"],
            "manage": row["manage"]}


def _base_json(row: asyncpg.Record) -> dict[str, Any]:
    base = {
        "id": str(row["id"]),
        "userId": str(row["user_id"]) if row["user_id"] else None,
        "type": row["type"],
        "status": row["status"],
        "externalId": row["external_id"],
        "accessSecretsManager": False,
        "accessPam": False,
        "resetPasswordEnrolled": False,
        "usesKeyConnector": False,
        "hasMasterPassword": True,
    }
    if row["permissions"] is not None:
        # omitted when there are none, as the Bitwarden server does
        base["permissions"] = row["permissions"]
    return base


def list_json(row: asyncpg.Record, grants: list[dict[str, Any]]) -> dict[str, Any]:
    """A member as the member list shows it (OrganizationUserUserDetailsResponseModel); the
    clients refuse an entry without an email, so an invitation shows its address."""
    return {
        **_base_json(row),
        "name": row["member_name"],
        "email": row["member_email"],
        "avatarColor": row["member_avatar_color"],
        "twoFactorEnabled": row["member_two_factor_enabled"],
        "ssoBound": False,
        "claimedByOrganization": False,
        "collections": grants,
        "groups": [],
        "revocationReason": None,
        "creationDate": iso(row["created_at"]),
        "object": "organizationUserUserDetails",
    }


def mini_details_json(row: asyncpg.Record) -> dict[str, Any]:
    """A member as the collection dialogs list it (OrganizationUserUserMiniDetailsResponseModel)."""
    return {
        "id": str(row["id"]),
        "userId": str(row["user_id"]) if row["user_id"] else None,
        "type": row["type"],
        "status": row["status"],
        "name": row["member_name"],
        "email": row["member_email"],
        "object": "organizationUserUserMiniDetails",
    }


def details_json(row: asyncpg.Record, grants: list[dict[str, Any]]) -> dict[str, Any]:
    """One member, as the member dialog and `bw confirm` read it (OrganizationUserDetailsResponseModel)."""
    return {
        **_base_json(row),
        "claimedByOrganization": False,
        "ssoExternalId": None,
        "collections": grants,
        "groups": [],
        "creationDate": iso(row["created_at"]),
        "object": "organizationUserDetails",
    }
