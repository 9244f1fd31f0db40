"""Organizations in tests: one made by an owner, members invited and confirmed as an admin would.

The clients are tests.support.bwclient's: the owner keeps the organization key it made, and a
member learns it from its profile once confirmed (BitwardenClient.sync).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.support.bwclient import BitwardenClient

__all__ = ["OWNER", "ADMIN", "USER", "CUSTOM", "Organization", "grant"]

OWNER, ADMIN, USER, CUSTOM = 0, 1, 2, 4


def grant(collection_or_member: str, *, read_only: bool = False, hide_passwords: bool = False,
          manage: bool = False) -> dict[str, Any]:
    """One access entry, as the clients send it."""
    return {"id": collection_or_member, "readOnly": read_only, "hidePasswords": hide_passwords, "manage": manage}


@dataclass
class Organization:
    owner: BitwardenClient
    id: str
    #: the collection made with the organization
    default_collection: str
    #: email -> membership id
    members: dict[str, str] = field(default_factory=dict)

    @classmethod
    async def create(cls, owner: BitwardenClient, name: str = "Acme") -> Organization:
        made = await owner.create_organization(name)
        sync = await owner.sync()
        [collection] = [c["id"] for c in sync["collections"] if c["organizationId"] == made["id"]]
        [own] = [o for o in sync["profile"]["organizations"] if o["id"] == made["id"]]
        organization = cls(owner, made["id"], collection)
        organization.members[owner.email] = own["organizationUserId"]
        return organization

    @property
    def path(self) -> str:
        return f"/api/organizations/{self.id}"

    async def invite(self, email: str, member_type: int = USER, collections: list[dict[str, Any]] | None = None,
                     permissions: dict[str, bool] | None = None, *, by: BitwardenClient | None = None) -> str:
        """Invite the address; returns the membership id."""
        reply = await (by or self.owner).post(f"{self.path}/users/invite", {
            "emails": [email], "type": member_type, "collections": collections or [], "groups": [],
            "permissions": permissions or {}, "accessSecretsManager": False})
        assert reply.status_code == 200, reply.text
        listed = (await self.owner.get(f"{self.path}/users")).json()["data"]
        [membership_id] = [m["id"] for m in listed if m["email"] == email.lower()]
        self.members[email.lower()] = membership_id
        return membership_id

    async def add(self, member: BitwardenClient, member_type: int = USER,
                  collections: list[dict[str, Any]] | None = None, permissions: dict[str, bool] | None = None) -> str:
        """Invite a registered client, confirm it, and let it learn the key; returns the membership id."""
        membership_id = await self.invite(member.email, member_type, collections, permissions)
        confirmed = await self.owner.confirm_member(self.id, membership_id)
        assert confirmed.status_code == 200, confirmed.text
        await member.sync()
        return membership_id

    async def collection(self, name: str, users: list[dict[str, Any]] | None = None) -> str:
        """A new collection made by the owner; returns its id."""
        reply = await self.owner.post(f"{self.path}/collections", {
            "name": self.owner.org_encrypt(self.id, name), "externalId": None, "groups": [], "users": users or []})
        assert reply.status_code == 200, reply.text
        return reply.json()["id"]

    async def item(self, name: str, collections: list[str], *, by: BitwardenClient | None = None) -> dict[str, Any]:
        """A new login item of the organization in those collections."""
        client = by or self.owner
        reply = await client.post("/api/ciphers/create", {"cipher": client.org_item(self.id, name),
                                                          "collectionIds": collections})
        assert reply.status_code == 200, reply.text
        return reply.json()
