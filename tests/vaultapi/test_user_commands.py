"""`pgwarden user list|disable|enable|logout|delete|reset-password`, run as an operator runs them,
against a live API: what the user's devices see (LogOut on the hub's channel, tokens refused,
logins refused or allowed)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable

import httpx

from db.events import PushType
from tests.support.bwclient import BitwardenClient
from tests.support.listen import EventListener
from tests.vaultapi.conftest import PASSWORD, ROOT_DIR, assert_event, registered


async def pgwarden(database_url: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url}
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "pgwarden.cli", *args], env=env, cwd=ROOT_DIR, input=stdin,
        capture_output=True, text=True, timeout=120)


async def token_reply(client: BitwardenClient, email: str, password: str) -> httpx.Response:
    """The token endpoint's answer to a password login, whatever it is."""
    client.email, client.password = email, password
    prelogin = await client.http.post("/identity/accounts/prelogin/password", json={"email": email})
    client.iterations = prelogin.json()["kdfSettings"]["iterations"]
    return await client.request_token()


async def user_id(client: BitwardenClient) -> str:
    return (await client.get("/api/sync")).json()["profile"]["id"]


async def test_disable_ends_every_session_and_refuses_logins_until_enabled(
        database_url: str, new_client: Callable[..., BitwardenClient], events: EventListener) -> None:
    ada = await registered(new_client, "ada@example.com", "Ada")
    ada_id = await user_id(ada)
    await events.nothing()

    done = await pgwarden(database_url, "user", "disable", "Ada@Example.com")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ada@example.com: disabled"
    # every connected client of hers is told, none is spared (no acting device)
    assert_event((await events.exactly(1))[0], PushType.LOG_OUT, ada_id, None, None)
    assert (await ada.get("/api/sync")).status_code == 401
    assert (await ada.refresh()).status_code == 400
    refused = await token_reply(new_client(), "ada@example.com", PASSWORD)
    assert refused.status_code == 400 and "disabled" in refused.json()["error_description"]

    listing = await pgwarden(database_url, "user", "list")
    assert any(line.split()[:2] == ["ada@example.com", "disabled"] for line in listing.stdout.splitlines())

    assert (await pgwarden(database_url, "user", "enable", "ada@example.com")).returncode == 0
    again = new_client()
    await again.login("ada@example.com", PASSWORD)
    assert (await again.get("/api/sync")).status_code == 200


async def test_logout_ends_sessions_and_the_account_logs_in_again(
        database_url: str, new_client: Callable[..., BitwardenClient], events: EventListener) -> None:
    bob = await registered(new_client, "bob@example.com", "Bob")
    bob_id = await user_id(bob)
    await events.nothing()
    assert (await pgwarden(database_url, "user", "logout", "bob@example.com")).returncode == 0
    assert_event((await events.exactly(1))[0], PushType.LOG_OUT, bob_id, None, None)
    assert (await bob.get("/api/sync")).status_code == 401
    await new_client().login("bob@example.com", PASSWORD)


async def test_delete_needs_yes_then_removes_the_account_and_tells_its_devices(
        database_url: str, new_client: Callable[..., BitwardenClient], events: EventListener) -> None:
    eve = await registered(new_client, "eve@example.com", "Eve")
    eve_id = await user_id(eve)
    await eve.post("/api/folders", {"name": eve.encrypt("private")})
    await events.exactly(1)

    refused = await pgwarden(database_url, "user", "delete", "eve@example.com")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert (await eve.get("/api/sync")).status_code == 200

    done = await pgwarden(database_url, "user", "delete", "eve@example.com", "--yes")
    assert done.returncode == 0, done.stderr
    types = {(int(event.type), event.user_id) for event in await events.exactly(2)}
    assert (PushType.LOG_OUT, eve_id) in types
    assert (await eve.get("/api/sync")).status_code == 401
    assert (await token_reply(new_client(), "eve@example.com", PASSWORD)).status_code == 400
    missing = await pgwarden(database_url, "user", "delete", "eve@example.com", "--yes")
    assert missing.returncode == 1 and missing.stderr.strip() == "pgwarden user delete: no account eve@example.com"


async def test_reset_password_forgets_the_vault_only_when_told(
        database_url: str, new_client: Callable[..., BitwardenClient]) -> None:
    kim = await registered(new_client, "kim@example.com", "Kim")
    await kim.post("/api/folders", {"name": kim.encrypt("old")})

    refused = await pgwarden(database_url, "user", "reset-password", "kim@example.com", "--password-stdin",
                             stdin="new master password\n")
    assert refused.returncode == 2 and "--forget-vault" in refused.stderr
    await new_client().login("kim@example.com", PASSWORD)

    done = await pgwarden(database_url, "user", "reset-password", "kim@example.com", "--forget-vault",
                          "--password-stdin", stdin="new master password\n")
    assert done.returncode == 0, done.stderr
    assert (await kim.get("/api/sync")).status_code == 401
    fresh = new_client()
    await fresh.login("kim@example.com", "new master password")
    sync = (await fresh.get("/api/sync")).json()
    assert sync["folders"] == [] and sync["ciphers"] == []
    folder = (await fresh.post("/api/folders", {"name": fresh.encrypt("new")})).json()
    assert fresh.decrypt(folder["name"]) == "new"


async def test_delete_is_refused_for_the_only_owner_of_an_organization(
        database_url: str, new_client: Callable[..., BitwardenClient]) -> None:
    owner = await registered(new_client, "owner@example.com", "Owner")
    organization = await owner.create_organization("Acme")
    refused = await pgwarden(database_url, "user", "delete", "owner@example.com", "--yes")
    assert refused.returncode == 1
    assert "only Owner of Acme" in refused.stderr and organization["id"] in refused.stderr
    assert (await owner.get("/api/sync")).status_code == 200, "nothing was deleted"
