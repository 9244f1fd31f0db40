"""Organizations made in SQL for the hub tests, as the API's writes leave them."""

from __future__ import annotations

from typing import Any

import asyncpg

from tests.wshub.support import HubUser

__all__ = ["ADMIN", "OWNER", "USER", "Org", "cipher"]

OWNER, ADMIN, USER = 0, 1, 2


class Org:
    """An organization made in SQL, as the API's writes leave it."""

    def __init__(self, db: asyncpg.Connection, org_id: str) -> None:
        self.db = db
        self.id = org_id
        self.memberships: dict[str, str] = {}

    @classmethod
    async def create(cls, db: asyncpg.Connection) -> Org:
        return cls(db, await db.fetchval("INSERT INTO organizations (name, billing_email) VALUES ('Acme', 'a@x')"
                                         " RETURNING id::text"))

    async def collection(self) -> str:
        return await self.db.fetchval("INSERT INTO collections (organization_id, name) VALUES ($1, '2.x|y|z')"
                                      " RETURNING id::text", self.id)

    async def member(self, user: HubUser, member_type: int = USER, collections: list[str] = (), *,
                     status: int = 2, access_all: bool = False) -> str:
        membership = await self.db.fetchval(
            "INSERT INTO memberships (organization_id, user_id, type, status, key, access_all,"
            " status_before_revoke) VALUES ($1, $2, $3, $4, '4.k', $5, $6) RETURNING id::text",
            self.id, user.id, member_type, status, access_all, 2 if status == -1 else None)
        self.memberships[user.id] = membership
        for collection in collections:
            await self.grant(user, collection)
        return membership

    async def grant(self, user: HubUser, collection: str) -> None:
        await self.db.execute("INSERT INTO collection_members (organization_id, collection_id, membership_id)"
                              " VALUES ($1, $2, $3)", self.id, collection, self.memberships[user.id])

    async def item(self, collections: list[str], device: str | None = None) -> tuple[str, Any]:
        async with self.db.transaction():
            if device:
                await self.db.execute("SELECT set_config('pgwarden.device_identifier', $1, true)", device)
            row = await self.db.fetchrow(
                "INSERT INTO ciphers (organization_id, collection_ids, type, data) VALUES ($1, $2, 1, '{}')"
                " RETURNING id::text, revision_date", self.id, collections)
        return row["id"], row["revision_date"]


def cipher(push_type: int, item: str, org: str, collections: list[str] | None, date: Any,
           context: str | None = None) -> dict[str, Any]:
    return {"ContextId": context, "Type": push_type,
            "Payload": {"Id": item, "UserId": None, "OrganizationId": org, "CollectionIds": collections,
                        "RevisionDate": date}}
