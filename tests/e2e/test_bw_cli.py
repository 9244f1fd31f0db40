"""The official `bw` CLI 2026.9.0 against pgwarden through the nginx example, TLS with a test CA.

One story, as a user lives it: an operator creates the account with `pgwarden user create`;
the CLI logs in, syncs, and creates, edits, deletes, restores, purges and imports. After each
command the database holds the change and published its event with the CLI's device as
context; a second CLI session (another device) sees the same vault after `bw sync`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from db.events import PushType
from tests.support.bwcli import Bw, encode
from tests.support.listen import EventListener
from tests.support.processes import free_port
from tests.support.proxy import ProxySettings, start_proxy
from tests.support.stack import Stack
from tests.support.tls import TlsFiles

pytestmark = pytest.mark.external

EMAIL = "Carol@Example.com"
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def server(database_url: str, certs: TlsFiles, logs: Path) -> Iterator[str]:
    """The public URL of one API and one hub behind nginx; the account already exists."""
    settings_ports = free_port(), free_port()
    domain = f"https://localhost:{settings_ports[1]}"
    stack = Stack(database_url, domain, logs).start(apis=1, hubs=1)
    settings = ProxySettings("localhost", *settings_ports, certs,
                             api=(stack.apis[0].address,), hub=(stack.hubs[0].address,))
    proxy = start_proxy("nginx", settings, logs / "nginx")
    try:
        created = subprocess.run(
            [sys.executable, "-m", "pgwarden.cli", "user", "create", "--email", EMAIL,
             "--password-stdin", "--name", "Carol"],
            env={"DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"},
            input=PASSWORD, capture_output=True, text=True, timeout=120,
        )
        assert created.returncode == 0, created.stdout + created.stderr
        yield settings.url
    finally:
        proxy.stop()
        stack.stop()


async def login_item(bw: Bw, name: str, folder_id: str) -> dict[str, Any]:
    """`bw get template item` filled in as a user would."""
    item = await bw.json("get", "template", "item")
    login = await bw.json("get", "template", "item.login")
    return {**item, "name": name, "notes": "created by the e2e test", "folderId": folder_id,
            "login": {**login, "username": "carol", "password": "hunter2", "uris": [], "totp": None}}


def names(items: list[dict[str, Any]]) -> list[str]:
    return sorted(item["name"] for item in items)


async def test_bw_cli_lives_a_vault_through_the_proxy(
    server: str, certs: TlsFiles, logs: Path, events: EventListener, db: asyncpg.Connection
) -> None:
    laptop, phone = Bw(logs / "bw-laptop", certs), Bw(logs / "bw-phone", certs)

    await laptop.login(server, EMAIL, PASSWORD)
    device = laptop.device_identifier()
    user_id = str(await db.fetchval("SELECT id FROM users WHERE email = lower($1)", EMAIL))
    assert await db.fetchval(
        "SELECT count(*) FROM devices WHERE user_id = $1 AND identifier = $2", user_id, device) == 1
    await laptop.run("sync")
    assert await laptop.json("list", "items") == []

    folder = await laptop.json("create", "folder", encode({"name": "Work"}))
    assert folder["name"] == "Work"
    row = await db.fetchrow("SELECT user_id, name FROM folders WHERE id = $1", folder["id"])
    assert str(row["user_id"]) == user_id
    assert row["name"].startswith("2.") and "Work" not in row["name"]  # stored encrypted
    event = await events.next()
    assert (event.type, event.item_id, event.user_id, event.device_identifier) == (
        PushType.SYNC_FOLDER_CREATE, folder["id"], user_id, device)

    created = await laptop.json("create", "item", encode(await login_item(laptop, "Mail", folder["id"])))
    assert (created["name"], created["folderId"], created["login"]["username"]) == ("Mail", folder["id"], "carol")
    row = await db.fetchrow("SELECT user_id, folders, deleted_date FROM ciphers WHERE id = $1", created["id"])
    assert str(row["user_id"]) == user_id and row["deleted_date"] is None
    assert folder["id"] in row["folders"]
    event = await events.next()
    assert (event.type, event.item_id, event.device_identifier) == (PushType.SYNC_CIPHER_CREATE, created["id"], device)

    edited = await laptop.json("edit", "item", created["id"], encode({**created, "name": "Mail (work)"}))
    assert edited["name"] == "Mail (work)"
    event = await events.next()
    assert (event.type, event.item_id, event.device_identifier) == (PushType.SYNC_CIPHER_UPDATE, created["id"], device)

    # A second device sees the vault as the first one left it.
    await phone.login(server, EMAIL, PASSWORD)
    assert phone.device_identifier() != device
    await phone.run("sync")
    seen = await phone.json("list", "items")
    assert names(seen) == ["Mail (work)"]
    assert seen[0]["folderId"] == folder["id"] and seen[0]["login"]["password"] == "hunter2"
    assert [f["name"] for f in await phone.json("list", "folders") if f["id"]] == ["Work"]

    await laptop.run("delete", "item", created["id"])
    assert await db.fetchval("SELECT deleted_date FROM ciphers WHERE id = $1", created["id"]) is not None
    event = await events.next()
    assert (event.type, event.item_id, event.device_identifier) == (PushType.SYNC_CIPHER_UPDATE, created["id"], device)
    await phone.run("sync")
    assert await phone.json("list", "items") == []
    assert names(await phone.json("list", "items", "--trash")) == ["Mail (work)"]

    await laptop.run("restore", "item", created["id"])
    assert await db.fetchval("SELECT deleted_date FROM ciphers WHERE id = $1", created["id"]) is None
    event = await events.next()
    assert (event.type, event.item_id, event.device_identifier) == (PushType.SYNC_CIPHER_UPDATE, created["id"], device)
    await phone.run("sync")
    assert names(await phone.json("list", "items")) == ["Mail (work)"]

    await laptop.run("delete", "item", created["id"], "--permanent")
    assert await db.fetchval("SELECT count(*) FROM ciphers WHERE id = $1", created["id"]) == 0
    event = await events.next()
    assert (event.type, event.item_id, event.device_identifier) == (PushType.SYNC_LOGIN_DELETE, created["id"], device)
    await phone.run("sync")
    assert await phone.json("list", "items") == []
    assert await phone.json("list", "items", "--trash") == []
    assert await laptop.json("list", "items") == []

    # An export from elsewhere, imported whole (read by the API's import reader, a child process).
    export = logs / "export.json"
    export.write_text(json.dumps({"encrypted": False, "folders": [{"id": str(uuid.uuid4()), "name": "Bank"}],
                                  "items": [{"type": 1, "name": f"Imported {n}", "notes": None, "favorite": n == 0,
                                             "folderId": None, "reprompt": 0,
                                             "login": {"username": "carol", "password": f"p{n}", "uris": [],
                                                       "totp": None}} for n in range(3)]}))
    await laptop.run("import", "bitwardenjson", str(export))
    assert await db.fetchval("SELECT count(*) FROM ciphers WHERE user_id = $1", user_id) == 3
    event = await events.next()
    assert (event.type, event.device_identifier) == (PushType.SYNC_VAULT, device)
    await phone.run("sync")
    assert names(await phone.json("list", "items")) == ["Imported 0", "Imported 1", "Imported 2"]
    assert "Bank" in [f["name"] for f in await phone.json("list", "folders")]
    await events.nothing()
