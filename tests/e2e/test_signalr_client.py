"""The official SignalR client (@microsoft/signalr 10 with MessagePack, configured as the
Bitwarden web vault and desktop app configure theirs) receives what SQL sessions commit.

Through the HAProxy example with TLS; tokens come from logging in to the API, so the hub
verifies what the API signed. Changes are made in plain SQL, as an admin or a script would.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import asyncpg
import pytest

from tests.support.bwclient import BitwardenClient
from tests.support.hublistener import HubListener
from tests.support.processes import free_port
from tests.support.proxy import ProxySettings, start_proxy
from tests.support.stack import Stack
from tests.support.tls import TlsFiles

pytestmark = pytest.mark.external


@pytest.fixture(scope="module")
def server(database_url: str, certs: TlsFiles, logs: Path) -> Iterator[str]:
    """The public URL of one API and one hub behind HAProxy."""
    http_port, https_port = free_port(), free_port()
    stack = Stack(database_url, f"https://localhost:{https_port}", logs).start(apis=1, hubs=1)
    settings = ProxySettings("localhost", http_port, https_port, certs,
                             api=(stack.apis[0].address,), hub=(stack.hubs[0].address,))
    proxy = start_proxy("haproxy", settings, logs / "haproxy")
    try:
        yield settings.url
    finally:
        proxy.stop()
        stack.stop()


def js_date(value: datetime) -> str:
    """A timestamp as JavaScript prints the Date the client decoded (milliseconds, UTC)."""
    utc = value.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


async def account(server: str, certs: TlsFiles, name: str) -> BitwardenClient:
    client = BitwardenClient(server, verify=certs.client_context())
    email = f"{name}-{uuid.uuid4().hex[:8]}@example.com"
    await client.register(email, "a long master password", name=name)
    await client.login()
    return client


async def user_id(db: asyncpg.Connection, client: BitwardenClient) -> str:
    return str(await db.fetchval("SELECT id FROM users WHERE email = $1", client.email))


async def test_official_client_receives_each_committed_change_of_its_user_only(
    server: str, certs: TlsFiles, logs: Path, db: asyncpg.Connection
) -> None:
    alice, bob = await account(server, certs, "alice"), await account(server, certs, "bob")
    alice_id, bob_id = await user_id(db, alice), await user_id(db, bob)
    alice_hub = await HubListener.node(server, certs, logs, "alice-signalr")
    bob_hub = await HubListener.node(server, certs, logs, "bob-signalr")
    try:
        await alice_hub.connect(alice.access_token)
        await bob_hub.connect(bob.access_token)

        # An admin's session that names itself: its context id reaches the client.
        async with db.transaction():
            await db.execute("SELECT set_config('pgwarden.device_identifier', 'admin-console', true)")
            folder = await db.fetchrow(
                "INSERT INTO folders (user_id, name) VALUES ($1, $2) RETURNING id, revision_date",
                alice_id, alice.encrypt("From SQL"))
        assert await alice_hub.next() == {
            "ContextId": "admin-console", "Type": 7,
            "Payload": {"Id": str(folder["id"]), "UserId": alice_id,
                        "RevisionDate": js_date(folder["revision_date"])},
        }

        # No context: ContextId is nil, so every device of the user acts on it.
        cipher = await db.fetchrow(
            "INSERT INTO ciphers (user_id, type, data) VALUES ($1, 1, $2::jsonb) RETURNING id, revision_date",
            alice_id, f'{{"name": "{alice.encrypt("Mail")}"}}')
        assert await alice_hub.next() == {
            "ContextId": None, "Type": 1,
            "Payload": {"Id": str(cipher["id"]), "UserId": alice_id, "OrganizationId": None,
                        "CollectionIds": None, "RevisionDate": js_date(cipher["revision_date"])},
        }

        soft_deleted = await db.fetchval(
            "UPDATE ciphers SET deleted_date = now() WHERE id = $1 RETURNING revision_date", cipher["id"])
        message = await alice_hub.next()
        assert (message["Type"], message["Payload"]["Id"], message["Payload"]["RevisionDate"]) == (
            0, str(cipher["id"]), js_date(soft_deleted))

        await db.execute("DELETE FROM ciphers WHERE id = $1", cipher["id"])
        message = await alice_hub.next()
        assert (message["Type"], message["Payload"]["Id"]) == (2, str(cipher["id"]))

        # A user-level event: full sync.
        await db.execute("INSERT INTO sync_events (user_id, push_type) VALUES ($1, 5)", alice_id)
        message = await alice_hub.next()
        assert message["Type"] == 5 and message["Payload"]["UserId"] == alice_id
        assert set(message["Payload"]) == {"UserId", "Date"}

        # A rolled-back change tells nobody anything.
        transaction = db.transaction()
        await transaction.start()
        await db.execute("INSERT INTO folders (user_id, name) VALUES ($1, $2)", alice_id, alice.encrypt("x"))
        await transaction.rollback()
        await alice_hub.nothing()

        # Bob heard none of Alice's changes, and Alice hears none of his.
        await bob_hub.nothing(0.1)
        bob_folder = await db.fetchval(
            "INSERT INTO folders (user_id, name) VALUES ($1, $2) RETURNING id", bob_id, bob.encrypt("Bob's"))
        message = await bob_hub.next()
        assert (message["Type"], message["Payload"]["Id"], message["Payload"]["UserId"]) == (
            7, str(bob_folder), bob_id)
        await alice_hub.nothing()
    finally:
        await alice_hub.close()
        await bob_hub.close()
        await alice.aclose()
        await bob.aclose()
