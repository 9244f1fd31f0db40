"""Organization live sync end to end, with the official SignalR client in Node for three members.

Two API and two hub processes behind the Caddy example (TLS with a test CA), so a member's
listener and the change it hears of may pass through different processes. Ann reaches the
organization's shared collection, Ned only a hidden one, Rex the shared one until the owner
removes him mid-way. The owner's device creates, edits and then moves an item between the
collections; each notification is checked for its type, its ids and the owner's device as
ContextId, whoever should not hear of a change hears nothing, and the member who is told fetches
the item over the REST API and decrypts it with the organization key.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.bwclient import BitwardenClient
from tests.support.hublistener import HubListener
from tests.support.organizations import USER, Organization, grant
from tests.support.processes import free_port
from tests.support.proxy import ProxySettings, start_proxy
from tests.support.stack import Stack
from tests.support.tls import TlsFiles

pytestmark = pytest.mark.external

PASSWORD = "shared items, live"
UPDATE, CREATE, DELETE, ORG_KEYS = 0, 1, 2, 6


@pytest.fixture(scope="module")
def server(database_url: str, certs: TlsFiles, logs: Path) -> Iterator[str]:
    """The public URL of two APIs and two hubs behind Caddy."""
    http_port, https_port = free_port(), free_port()
    stack = Stack(database_url, f"https://localhost:{https_port}", logs).start(apis=2, hubs=2)
    settings = ProxySettings("localhost", http_port, https_port, certs,
                             api=tuple(r.address for r in stack.apis), hub=tuple(r.address for r in stack.hubs))
    proxy = start_proxy("caddy", settings, logs / "caddy")
    try:
        yield settings.url
    finally:
        proxy.stop()
        stack.stop()


@pytest.fixture
async def accounts(server: str, certs: TlsFiles) -> AsyncIterator[dict[str, BitwardenClient]]:
    clients = {}
    try:
        for name in ("owner", "ann", "ned", "rex"):
            client = BitwardenClient(server, verify=certs.client_context(), device_type=9)
            clients[name] = client
            await client.register(f"{name}@example.com", PASSWORD, name=name.title())
            await client.login()
        yield clients
    finally:
        for client in clients.values():
            await client.aclose()


def check(message: dict[str, Any], push_type: int, item: str, org: str, collections: list[str] | None,
          context: str) -> None:
    assert message["ContextId"] == context, message
    assert message["Type"] == push_type, message
    payload = message["Payload"]
    assert (payload["Id"], payload["UserId"], payload["OrganizationId"], payload["CollectionIds"]) == (
        item, None, org, collections), message


async def fetched_name(client: BitwardenClient, org: str, item: str) -> str:
    reply = await client.get(f"/api/ciphers/{item}/details")
    assert reply.status_code == 200, reply.text
    return client.org_decrypt(org, reply.json()["name"])


async def test_org_changes_reach_exactly_the_members_who_see_the_item(
        server: str, certs: TlsFiles, logs: Path, accounts: dict[str, BitwardenClient]) -> None:
    owner, ann, ned, rex = (accounts[name] for name in ("owner", "ann", "ned", "rex"))
    org = await Organization.create(owner, "Family")
    shared = org.default_collection
    hidden = await org.collection("Hidden")
    await org.add(ann, USER, [grant(shared)])
    await org.add(ned, USER, [grant(hidden)])
    rex_membership = await org.add(rex, USER, [grant(shared)])
    listeners = {name: await HubListener.node(server, certs, logs, f"{name}-signalr") for name in ("ann", "ned", "rex")}
    try:
        for name, listener in listeners.items():
            await listener.connect(accounts[name].access_token)
        context = owner.device

        created = await org.item("Door code", [shared])
        item = created["id"]
        for name in ("ann", "rex"):
            check(await listeners[name].next(), CREATE, item, org.id, [shared], context)
        assert await fetched_name(ann, org.id, item) == "Door code"
        await listeners["ned"].nothing()
        assert (await ned.get(f"/api/ciphers/{item}/details")).status_code == 404

        # Rex is removed: he is told (SyncOrgKeys), and hears nothing of the organization after
        removed = await owner.delete(f"{org.path}/users/{rex_membership}")
        assert removed.status_code == 200, removed.text
        message = await listeners["rex"].next()
        assert (message["Type"], message["ContextId"]) == (ORG_KEYS, context), message

        edited = await owner.put(f"/api/ciphers/{item}", owner.org_item(org.id, "Door code (new)"))
        assert edited.status_code == 200, edited.text
        check(await listeners["ann"].next(), UPDATE, item, org.id, [shared], context)
        assert await fetched_name(ann, org.id, item) == "Door code (new)"

        # into the hidden collection: gone for Ann, new for Ned
        moved = await owner.put(f"/api/ciphers/{item}/collections_v2", {"collectionIds": [hidden]})
        assert moved.status_code == 200, moved.text
        check(await listeners["ann"].next(), DELETE, item, org.id, [shared], context)
        assert (await ann.get(f"/api/ciphers/{item}/details")).status_code == 404
        check(await listeners["ned"].next(), CREATE, item, org.id, [hidden], context)
        assert await fetched_name(ned, org.id, item) == "Door code (new)"

        assert (await rex.get(f"/api/ciphers/{item}/details")).status_code == 404
        for listener in listeners.values():
            await listener.nothing()
    finally:
        for listener in listeners.values():
            await listener.close()
