"""The official `bw` CLI 2026.9.0 in an organization, through the nginx example with a test CA.

An owner (the test client, as the web vault would) creates the organization, invites Carol as an
Admin (an account: accepted at once, there is no mail) and confirms her with her public key; Erin
is invited too and waits. Carol's CLI then lists the organization, its collections and members,
creates and edits a collection, confirms Erin (the organization key wrapped to Erin's public
key), moves a personal item into the organization and changes its collections. After each
command the database holds the change and its event names the CLI's device; Erin, the owner and
a second device of Carol see the same organization after a sync.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from db.events import PushType
from tests.support.bwcli import Bw, encode
from tests.support.bwclient import BitwardenClient
from tests.support.listen import EventListener
from tests.support.organizations import ADMIN, USER, Organization
from tests.support.processes import free_port
from tests.support.proxy import ProxySettings, start_proxy
from tests.support.stack import Stack
from tests.support.tls import TlsFiles
from vaultapi.clientcrypto import unwrap_key

pytestmark = pytest.mark.external

PASSWORD = "organizations, finally"


@pytest.fixture(scope="module")
def server(database_url: str, certs: TlsFiles, logs: Path) -> Iterator[str]:
    """The public URL of one API and one hub behind nginx."""
    ports = free_port(), free_port()
    stack = Stack(database_url, f"https://localhost:{ports[1]}", logs).start(apis=1, hubs=1)
    settings = ProxySettings("localhost", *ports, certs, api=(stack.apis[0].address,), hub=(stack.hubs[0].address,))
    proxy = start_proxy("nginx", settings, logs / "nginx")
    try:
        yield settings.url
    finally:
        proxy.stop()
        stack.stop()


@pytest.fixture
async def accounts(server: str, certs: TlsFiles) -> AsyncIterator[dict[str, BitwardenClient]]:
    """The owner, Carol (the CLI's user) and Erin, registered and logged in as test clients."""
    clients = {}
    try:
        for name in ("owner", "carol", "erin"):
            client = BitwardenClient(server, verify=certs.client_context())
            clients[name] = client
            await client.register(f"{name}@example.com", PASSWORD, name=name.title())
            await client.login()
        yield clients
    finally:
        for client in clients.values():
            await client.aclose()


async def encrypted_name(org: Organization, db: asyncpg.Connection, collection_id: str) -> str:
    name = await db.fetchval("SELECT name FROM collections WHERE id = $1", uuid.UUID(collection_id))
    assert name.startswith("2."), "stored encrypted"
    return org.owner.org_decrypt(org.id, name)


async def test_bw_cli_in_an_organization(server: str, certs: TlsFiles, logs: Path, accounts: dict[str, BitwardenClient],
                                         events: EventListener, db: asyncpg.Connection) -> None:
    owner, carol, erin = accounts["owner"], accounts["carol"], accounts["erin"]
    org = await Organization.create(owner, "Acme")
    carol_membership = await org.add(carol, ADMIN)
    erin_membership = await org.invite(erin.email, USER)
    await events.exactly(2)  # the owner's and Carol's SyncOrgKeys
    carol_id = str(await db.fetchval("SELECT id FROM users WHERE email = 'carol@example.com'"))
    erin_id = str(await db.fetchval("SELECT id FROM users WHERE email = 'erin@example.com'"))

    laptop, phone = Bw(logs / "bw-laptop", certs), Bw(logs / "bw-phone", certs)
    await laptop.login(server, carol.email, PASSWORD)
    device = laptop.device_identifier()
    await phone.login(server, carol.email, PASSWORD)

    [listed] = await laptop.json("list", "organizations")
    assert (listed["id"], listed["name"], listed["type"], listed["status"]) == (org.id, "Acme", ADMIN, 2)
    [collection] = await laptop.json("list", "org-collections", "--organizationid", org.id)
    assert (collection["id"], collection["name"]) == (org.default_collection, "Default collection")

    # a collection for Erin, made and renamed by Carol
    created = await laptop.json("create", "org-collection", "--organizationid", org.id, encode({
        "organizationId": org.id, "name": "Engineering", "externalId": None, "groups": [],
        "users": [{"id": erin_membership, "readOnly": False, "hidePasswords": False, "manage": False}]}))
    engineering = created["id"]
    assert created["name"] == "Engineering" and [u["id"] for u in created["users"]] == [erin_membership]
    assert await encrypted_name(org, db, engineering) == "Engineering"
    await events.nothing()  # Erin is not confirmed: nothing for her devices yet
    edited = await laptop.json("edit", "org-collection", engineering, "--organizationid", org.id, encode({
        "organizationId": org.id, "name": "Engineering (EU)", "externalId": "eng-eu",
        "users": [{"id": erin_membership, "readOnly": False, "hidePasswords": False, "manage": False}]}))
    assert edited["name"] == "Engineering (EU)"
    assert await encrypted_name(org, db, engineering) == "Engineering (EU)"
    assert await db.fetchval("SELECT external_id FROM collections WHERE id = $1", uuid.UUID(engineering)) == "eng-eu"
    await events.nothing()

    members = {m["email"]: m for m in await laptop.json("list", "org-members", "--organizationid", org.id)}
    assert {email: (m["status"], m["type"]) for email, m in members.items()} == {
        "owner@example.com": (2, 0), "carol@example.com": (2, ADMIN), "erin@example.com": (1, USER)}
    assert members["erin@example.com"]["id"] == erin_membership

    # Carol confirms Erin: the key she wraps opens with Erin's private key
    await laptop.run("confirm", "org-member", erin_membership, "--organizationid", org.id)
    row = await db.fetchrow("SELECT status, key FROM memberships WHERE id = $1", uuid.UUID(erin_membership))
    assert row["status"] == 2 and unwrap_key(erin.private_key, row["key"]) == owner.org_keys[org.id]
    event = await events.next()
    assert (event.type, event.user_id, event.device_identifier) == (PushType.SYNC_ORG_KEYS, erin_id, device)

    # a personal item moves into the organization
    template: dict[str, Any] = await laptop.json("get", "template", "item")
    login = await laptop.json("get", "template", "item.login")
    personal = await laptop.json("create", "item", encode({
        **template, "name": "Build server", "notes": None, "folderId": None,
        "login": {**login, "username": "ci", "password": "hunter2", "uris": [], "totp": None}}))
    event = await events.next()
    assert (event.type, event.user_id, event.item_id) == (PushType.SYNC_CIPHER_CREATE, carol_id, personal["id"])
    moved = await laptop.json("move", personal["id"], org.id, encode([org.default_collection]))
    assert (moved["organizationId"], moved["collectionIds"]) == (org.id, [org.default_collection])
    row = await db.fetchrow("SELECT user_id, organization_id, collection_ids FROM ciphers WHERE id = $1",
                            uuid.UUID(personal["id"]))
    assert (row["user_id"], str(row["organization_id"]), row["collection_ids"]) == (
        None, org.id, [uuid.UUID(org.default_collection)])
    moved_events = {(e.type, e.user_id, e.org_id, e.device_identifier) for e in [await events.next(), await events.next()]}
    assert moved_events == {(PushType.SYNC_LOGIN_DELETE, carol_id, None, device),
                            (PushType.SYNC_CIPHER_CREATE, None, org.id, device)}

    both = [org.default_collection, engineering]
    changed = await laptop.json("edit", "item-collections", personal["id"], "--organizationid", org.id, encode(both))
    assert sorted(changed["collectionIds"]) == sorted(both)
    assert sorted(await db.fetchval("SELECT collection_ids FROM ciphers WHERE id = $1", uuid.UUID(personal["id"]))) \
        == sorted(uuid.UUID(c) for c in both)
    event = await events.next()
    assert (event.type, event.user_id, event.org_id, event.item_id, event.device_identifier) == (
        PushType.SYNC_CIPHER_UPDATE, None, org.id, personal["id"], device)

    [in_org] = await laptop.json("list", "items", "--organizationid", org.id)
    assert (in_org["id"], in_org["name"], in_org["login"]["password"]) == (personal["id"], "Build server", "hunter2")
    assert await laptop.json("list", "items", "--organizationid", "null") == []
    await events.nothing()

    # Erin reaches it through Engineering, the owner through the role, with the organization key
    for client, collections in ((erin, [engineering]), (owner, both)):
        sync = await client.sync()
        [item] = sync["ciphers"]
        assert client.org_decrypt(org.id, item["name"]) == "Build server", client.email
        assert sorted(item["collectionIds"]) == sorted(collections), client.email
    # Carol's second device, after a sync: the organization, its collections, the moved item
    await phone.run("sync")
    assert [o["id"] for o in await phone.json("list", "organizations")] == [org.id]
    assert sorted(c["name"] for c in await phone.json("list", "collections")) == [
        "Default collection", "Engineering (EU)"]
    [seen] = await phone.json("list", "items", "--organizationid", org.id)
    assert (seen["id"], sorted(seen["collectionIds"])) == (personal["id"], sorted(both))
    assert await phone.json("list", "items", "--organizationid", "null") == []
    assert carol_membership == members["carol@example.com"]["id"]
