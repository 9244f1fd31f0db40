"""The hub's own database role: enough to check tokens and relay events, and nothing more."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from db.roles import hub_grants
from tests.wshub.support import HubClient, create_user, hub_config, issuer_for, start_hub

PASSWORD_VARIABLE = "PGWARDEN_TEST_HUB_PASSWORD"
PASSWORD = "hub-secret-9f3a"


def as_role(url: str, role: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{role}:{password}@{host}"))


def pgwarden(*args: str, database_url: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    if database_url:
        environ["DATABASE_URL"] = database_url
    return subprocess.run([sys.executable, "-m", "pgwarden.cli", *args], env={**environ, **env},
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
async def role_name(db: asyncpg.Connection) -> AsyncIterator[str]:
    """A role name of this test alone; the role, if made, and its grants are dropped after."""
    role = f"pgwarden_hub_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    yield role
    if await db.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
        await db.execute(f'DROP OWNED BY "{role}"')  # its grants in this database, CONNECT included
        await db.execute(f'DROP ROLE "{role}"')


@pytest.fixture
async def hub_url(database_url: str, role_name: str) -> str:
    """A DATABASE_URL for a hub role made by `pgwarden db grant-hub`."""
    done = pgwarden("db", "grant-hub", role_name, "--password-env", PASSWORD_VARIABLE,
                    database_url=database_url, **{PASSWORD_VARIABLE: PASSWORD})
    assert done.returncode == 0, done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    return as_role(database_url, role_name, PASSWORD)


async def test_hub_on_its_own_role_checks_tokens_and_relays_events(hub_url: str, db: asyncpg.Connection) -> None:
    hub = await start_hub(hub_url)
    try:
        user = await create_user(db, await issuer_for(db, hub_config()))
        client = await HubClient.connect(hub.ws_url(access_token=user.token()))
        folder = await db.fetchval("INSERT INTO folders (user_id, name) VALUES ($1, 'n') RETURNING id::text", user.id)
        notification = await client.notification()
        assert notification["Type"] == 7 and notification["Payload"]["Id"] == folder  # SyncFolderCreate
        await client.close()
    finally:
        await hub.stop()


async def test_hub_role_reads_only_what_the_hub_needs(hub_url: str, db: asyncpg.Connection) -> None:
    hub_db = await asyncpg.connect(hub_url)
    try:
        user_id = await db.fetchval("INSERT INTO users (email, password_hash, key) VALUES ('h@example.com', 'x', 'k')"
                                    " RETURNING id")
        assert await hub_db.fetchval("SELECT count(*) FROM token_public_keys") == 1
        assert await hub_db.fetchrow("SELECT id, security_stamp FROM users WHERE id = $1", user_id)
        # whether a token's device was deactivated (core.access.find_stamp)
        assert await hub_db.fetch("SELECT id, active FROM devices WHERE user_id = $1 AND identifier = 'd'", user_id) == []
        assert await hub_db.fetch(  # the LISTEN gap recovery
            "SELECT user_id, revision_date FROM pgwarden_user_revisions($1::uuid[]) WHERE revision_date > $2",
            [user_id], await db.fetchval("SELECT now() - interval '1 day'"))
        # routing organization events: who reaches what, through the view only
        assert await hub_db.fetch("SELECT organization_id, collection_id FROM member_access WHERE user_id = $1",
                                  user_id) == []
        for forbidden in (
            "SELECT * FROM memberships",
            "SELECT * FROM collection_members",
            "SELECT * FROM organizations",
            "SELECT private_key_pem FROM token_private_keys",
            "SELECT * FROM users",
            "SELECT password_hash FROM users",
            "SELECT * FROM ciphers",
            "SELECT * FROM devices",
            "SELECT refresh_token_hash FROM devices",
            "SELECT * FROM auth_requests",
            "UPDATE users SET security_stamp = gen_random_uuid()",
            "DELETE FROM token_public_keys",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await hub_db.execute(forbidden)
    finally:
        await hub_db.close()


async def test_printed_grants_applied_by_hand_make_a_working_hub_role(
        database_url: str, role_name: str, db: asyncpg.Connection) -> None:
    printed = pgwarden("db", "grant-hub", role_name, "--print")  # no database needed to print
    assert printed.returncode == 0, printed.stderr
    assert "GRANT SELECT (id, security_stamp) ON users" in printed.stdout
    await db.execute(f'CREATE ROLE "{role_name}" LOGIN')
    await db.execute(printed.stdout)
    hub_db = await asyncpg.connect(as_role(database_url, role_name, "unused"))
    try:
        assert await hub_db.fetchval("SELECT count(*) FROM token_public_keys") == 1
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await hub_db.execute("SELECT * FROM token_private_keys")
    finally:
        await hub_db.close()


async def test_grant_hub_again_is_harmless_and_sets_the_password(hub_url: str, database_url: str,
                                                                role_name: str) -> None:
    again = pgwarden("db", "grant-hub", role_name, "--password-env", PASSWORD_VARIABLE,
                     database_url=database_url, **{PASSWORD_VARIABLE: "another"})
    assert again.returncode == 0, again.stderr
    hub_db = await asyncpg.connect(hub_url)
    await hub_db.close()


def test_grant_hub_for_a_missing_role_without_a_password_says_how(database_url: str, role_name: str) -> None:
    done = pgwarden("db", "grant-hub", role_name, database_url=database_url)
    assert done.returncode == 2
    assert f"role {role_name} does not exist" in done.stderr and "--password-env" in done.stderr
    assert "Traceback" not in done.stderr


def test_grant_hub_refuses_a_superuser(database_url: str) -> None:
    done = pgwarden("db", "grant-hub", "postgres", database_url=database_url)
    assert done.returncode == 2 and "superuser" in done.stderr and "Traceback" not in done.stderr


def test_grant_hub_refuses_a_name_that_is_no_plain_identifier() -> None:
    done = pgwarden("db", "grant-hub", 'x"; DROP TABLE users; --', "--print")
    assert done.returncode == 2 and "Traceback" not in done.stderr


async def test_migrating_to_0009_carries_an_existing_hub_role_to_the_device_check(
        database_url: str, role_name: str, db: asyncpg.Connection) -> None:
    """A hub role granted before migration 0009 reads the token's device after it, with no new grant-hub."""
    from db import migrate

    await db.execute(f'CREATE ROLE "{role_name}" LOGIN PASSWORD \'{PASSWORD}\'')
    await asyncio.to_thread(migrate.downgrade, database_url, "0008")
    # the grants of that time: neither the devices nor the organizations' revisions (migration 0012)
    before = "\n".join(line for line in hub_grants(role_name).splitlines()
                       if " ON devices " not in line and "organization_revisions" not in line)
    await db.execute(before)
    await asyncio.to_thread(migrate.upgrade, database_url)
    hub_db = await asyncpg.connect(as_role(database_url, role_name, PASSWORD))
    try:
        assert await hub_db.fetch("SELECT id, active FROM devices WHERE identifier = 'd'") == []
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await hub_db.execute("SELECT refresh_token_hash FROM devices")
    finally:
        await hub_db.close()


async def test_migrating_to_0012_carries_an_existing_hub_role_to_organization_routing(
        database_url: str, role_name: str, db: asyncpg.Connection) -> None:
    """A hub role granted before migration 0012 reads the members' grants and revision dates after it."""
    from db import migrate

    await db.execute(f'CREATE ROLE "{role_name}" LOGIN PASSWORD \'{PASSWORD}\'')
    await asyncio.to_thread(migrate.downgrade, database_url, "0011")
    before = "\n".join(line for line in hub_grants(role_name).splitlines()
                       if "organization_revisions" not in line and "member_access" not in line)
    await db.execute(before)
    await asyncio.to_thread(migrate.upgrade, database_url)
    user_id = await db.fetchval("INSERT INTO users (email, password_hash, key) VALUES ('m@example.com', 'x', 'k')"
                                " RETURNING id")
    hub_db = await asyncpg.connect(as_role(database_url, role_name, PASSWORD))
    try:
        assert await hub_db.fetch("SELECT organization_id FROM member_access WHERE user_id = $1", user_id) == []
        assert len(await hub_db.fetch("SELECT * FROM pgwarden_user_revisions($1::uuid[])", [user_id])) == 1
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await hub_db.execute("SELECT * FROM memberships")
    finally:
        await hub_db.close()
