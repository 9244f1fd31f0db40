"""The organizations table: finders, writes, and the two wire shapes of an organization.

pgwarden has no billing: every organization reports the plan Vaultwarden reports (Custom, the
Enterprise tier), which opens the clients' organization pages without upgrade prompts or seat
limits, and the feature gates of core.capabilities. The collection management settings are fixed
(COLLECTION_MANAGEMENT) and the member rules in vaultapi/models/memberships.py follow them.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from core import capabilities
from vaultapi import publish
from vaultapi.errors import ApiError, NotFound

__all__ = [
    "COLLECTION_MANAGEMENT",
    "PLAN_TYPE_CUSTOM",
    "PRODUCT_TIER_ENTERPRISE",
    "create",
    "delete",
    "find_by_id",
    "lock",
    "organization_json",
    "profile_json",
    "require",
    "set_keys",
    "update",
]

Conn = asyncpg.Connection | asyncpg.Pool

#: PlanType.Custom: no plan to pay for
PLAN_TYPE_CUSTOM = 6
#: ProductTierType.Enterprise: the clients limit the invitations of fixed-seat tiers only
PRODUCT_TIER_ENTERPRISE = 3
#: The web vault's own cap of invitations per request, which it reads as the seat count
PROFILE_SEATS = 20

#: The organization settings of collection management, the same for every organization: only
#: Owners, Admins and Custom members so permitted create or delete collections; whoever may edit
#: an item may delete it; Owners and Admins reach every item.
COLLECTION_MANAGEMENT = {
    "limitCollectionCreation": True,
    "limitCollectionDeletion": True,
    "limitItemDeletion": False,
    "allowAdminAccessToAllCollectionItems": True,
}


async def find_by_id(conn: Conn, organization_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM organizations WHERE id = $1", organization_id)


async def require(conn: Conn, organization_id: uuid.UUID) -> asyncpg.Record:
    row = await find_by_id(conn, organization_id)
    if row is None:
        raise NotFound("Organization")
    return row


async def lock(conn: asyncpg.Connection, organization_id: uuid.UUID) -> None:
    """Changes to the organization's members wait for this transaction (see memberships.require_member)."""
    if await conn.fetchval("SELECT id FROM organizations WHERE id = $1 FOR NO KEY UPDATE", organization_id) is None:
        raise NotFound("Organization")


# ---- writes: call them inside publish.write -------------------------------------------------

async def create(conn: asyncpg.Connection, name: str, billing_email: str, public_key: str,
                 private_key: str) -> asyncpg.Record:
    return await conn.fetchrow(
        "INSERT INTO organizations (name, billing_email, public_key, private_key) VALUES ($1, $2, $3, $4)"
        " RETURNING *", name, billing_email, public_key, private_key)


async def update(conn: asyncpg.Connection, organization_id: uuid.UUID, name: str,
                 billing_email: str) -> asyncpg.Record:
    """A new name tells every confirmed member's devices (SyncOrganizations: they sync at once,
    and show it); the billing email is the Owners' business alone."""
    renamed = await conn.fetchval(
        "SELECT name IS DISTINCT FROM $2 FROM organizations WHERE id = $1", organization_id, name)
    row = await conn.fetchrow(
        "UPDATE organizations SET name = $2, billing_email = $3, updated_at = now() WHERE id = $1 RETURNING *",
        organization_id, name, billing_email)
    if renamed:
        members = await conn.fetch("SELECT user_id FROM memberships WHERE organization_id = $1 AND status = 2",
                                   organization_id)
        await publish.organization_changed(conn, [member["user_id"] for member in members])
    return row


async def set_keys(conn: asyncpg.Connection, organization_id: uuid.UUID, public_key: str,
                   private_key: str) -> asyncpg.Record:
    """The key pair is given once; an organization that has one keeps it."""
    row = await conn.fetchrow(
        "UPDATE organizations SET public_key = $2, private_key = $3, updated_at = now()"
        " WHERE id = $1 AND public_key IS NULL RETURNING *", organization_id, public_key, private_key)
    if row is None:
        raise ApiError("Organization Keys already exist.")
    return row


async def delete(conn: asyncpg.Connection, organization_id: uuid.UUID) -> None:
    """The organization and everything in it. Its items go first, in one statement (one bulk
    event), so that deleting its collections has no item left to update."""
    await conn.execute("DELETE FROM ciphers WHERE organization_id = $1", organization_id)
    await conn.execute("DELETE FROM organizations WHERE id = $1", organization_id)


# ---- wire shapes ---------------------------------------------------------------------------

def organization_json(row: asyncpg.Record) -> dict[str, Any]:
    """What the organization's own endpoints answer (OrganizationResponseModel)."""
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "businessName": None,
        "businessAddress1": None,
        "businessAddress2": None,
        "businessAddress3": None,
        "businessCountry": None,
        "businessTaxNumber": None,
        "billingEmail": row["billing_email"],
        "plan": None,
        "planType": PLAN_TYPE_CUSTOM,
        "productTierType": PRODUCT_TIER_ENTERPRISE,
        "seats": None,
        "maxAutoscaleSeats": None,
        "maxCollections": None,
        "maxStorageGb": None,
        **capabilities.organization_features(),
        "hasPublicAndPrivateKeys": _has_keys(row),
        "smSeats": None,
        "smServiceAccounts": None,
        "maxAutoscaleSmSeats": None,
        "maxAutoscaleSmServiceAccounts": None,
        **COLLECTION_MANAGEMENT,
        "object": "organization",
    }


def profile_json(row: asyncpg.Record) -> dict[str, Any]:
    """A confirmed membership as the profile and sync list it (ProfileOrganizationResponseModel):
    the organization's facts, the member's role and the organization key wrapped for the member.

    `row` is a memberships row with the organization's columns as org_name, org_enabled,
    org_public_key and org_private_key."""
    return {
        "id": str(row["organization_id"]),
        "userId": str(row["user_id"]),
        "organizationUserId": str(row["id"]),
        "name": row["org_name"],
        "enabled": row["org_enabled"],
        "identifier": None,
        "productTierType": PRODUCT_TIER_ENTERPRISE,
        "status": row["status"],
        "type": row["type"],
        "permissions": row["permissions"],
        "key": row["key"],
        "hasPublicAndPrivateKeys": row["org_public_key"] is not None and row["org_private_key"] is not None,
        "seats": PROFILE_SEATS,
        "maxCollections": None,
        "maxStorageGb": None,
        **capabilities.organization_features(),
        "ssoBound": False,
        "resetPasswordEnrolled": False,
        "ssoEnabled": False,
        "keyConnectorEnabled": False,
        "keyConnectorUrl": None,
        "ssoMemberDecryptionType": None,
        **COLLECTION_MANAGEMENT,
        "providerId": None,
        "providerName": None,
        "providerType": None,
        "accessSecretsManager": False,
        "accessPam": False,
        "userIsClaimedByOrganization": False,
        "familySponsorshipFriendlyName": None,
        "familySponsorshipAvailable": False,
        "familySponsorshipLastSyncDate": None,
        "familySponsorshipValidUntil": None,
        "familySponsorshipToDelete": None,
        "isAdminInitiated": False,
        "object": "profileOrganization",
    }


def _has_keys(row: asyncpg.Record) -> bool:
    return row["public_key"] is not None and row["private_key"] is not None
