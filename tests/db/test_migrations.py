"""Migrations go up, down and up again on an empty database."""

from __future__ import annotations

import os
import time

import asyncpg
import jwt
import psycopg
import pytest

from core.keyring import KeyRing
from core.keystore import ensure_signing_key
from core.tokens import SigningKey, SigningKeyError, key_id
from db import migrate

VAULT_TABLES = {"users", "devices", "folders", "ciphers", "sync_events", "token_public_keys",
                "token_private_keys", "login_limits", "server_secrets", "organizations", "memberships",
                "collections", "collection_members", "user_revisions"}
ISSUER = "https://vault.test|login"


def tables_and_triggers(url: str) -> tuple[set[str], set[str]]:
    with psycopg.connect(url) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        triggers = {r[0] for r in conn.execute("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")}
    return tables, triggers


def test_migrations_up_down_up(empty_database_url: str) -> None:
    migrate.upgrade(empty_database_url)
    tables, triggers = tables_and_triggers(empty_database_url)
    assert VAULT_TABLES <= tables
    assert {"ciphers_inserted", "ciphers_updated", "ciphers_deleted", "folders_deleted", "sync_events_added",
            "collections_deleted"} <= triggers
    assert migrate.current_revision(empty_database_url) is not None

    migrate.downgrade(empty_database_url, "base")
    tables, triggers = tables_and_triggers(empty_database_url)
    assert tables == {"alembic_version"}
    assert triggers == set()
    assert migrate.current_revision(empty_database_url) is None

    migrate.upgrade(empty_database_url)
    assert VAULT_TABLES <= tables_and_triggers(empty_database_url)[0]


def test_migrate_command_against_database_url(empty_database_url: str) -> None:
    import subprocess
    import sys

    env = {**os.environ, "DATABASE_URL": empty_database_url}
    done = subprocess.run(
        [sys.executable, "-m", "pgwarden.cli", "migrate"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    with psycopg.connect(empty_database_url) as conn:
        keys = conn.execute("SELECT count(*) FROM token_public_keys WHERE retires_at IS NULL").fetchone()[0]
    assert keys == 1, "migrate also makes the token signing key pair"
    with psycopg.connect(empty_database_url) as conn:
        secrets = conn.execute("SELECT count(*) FROM server_secrets WHERE length(value) = 32").fetchone()[0]
    assert secrets == 1, "and the API's server secrets"
    assert migrate.current_revision(empty_database_url) == migrate_head()


def test_migrate_command_with_a_multi_host_url_finds_the_host_that_takes_writes(empty_database_url: str) -> None:
    import subprocess
    import sys
    from urllib.parse import urlsplit

    from tests.support.processes import free_port

    # a host that is down, then the server: as after a failover, with the old primary listed first
    parts = urlsplit(empty_database_url)
    host = f"{parts.hostname}:{parts.port or 5432}"
    url = empty_database_url.replace(host, f"127.0.0.1:{free_port()},{host}", 1) + "?target_session_attrs=read-write"
    env = {**os.environ, "DATABASE_URL": url}
    done = subprocess.run(
        [sys.executable, "-m", "pgwarden.cli", "migrate"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert migrate.current_revision(url) == migrate.current_revision(empty_database_url) == migrate_head()


def migrate_head() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(migrate.alembic_config("postgresql://x@localhost/x")).get_current_head()


def test_migrate_command_on_embedded_postgres_keeps_data(data_dir) -> None:
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["DATA_FOLDER"] = str(data_dir)
    for _ in range(2):  # the second run finds the same cluster, already at head
        done = subprocess.run(
            [sys.executable, "-m", "pgwarden.cli", "migrate"], env=env, capture_output=True, text=True, timeout=180
        )
        assert done.returncode == 0, done.stderr
        assert f"database at revision {migrate_head()}" in done.stderr
    assert (data_dir / "postgres" / "PG_VERSION").exists()


def test_refresh_tokens_issued_before_0004_keep_working_for_a_lifetime(empty_database_url: str) -> None:
    migrate.upgrade(empty_database_url, "0003")
    with psycopg.connect(empty_database_url) as conn:
        conn.execute("INSERT INTO users (email, password_hash, key) VALUES ('a@example.com', 'x', 'k')")
        conn.execute("INSERT INTO devices (user_id, identifier, type, name, refresh_token_hash)"
                     " SELECT id, 'd', 25, 'n', 'h' FROM users")
    migrate.upgrade(empty_database_url, "0004")
    with psycopg.connect(empty_database_url) as conn:
        carried = conn.execute(
            "SELECT d.refresh_token_stamp = u.security_stamp,"
            "       d.refresh_token_expires_at BETWEEN now() + interval '29 days' AND now() + interval '31 days'"
            "  FROM devices d JOIN users u ON u.id = d.user_id").fetchone()
    assert carried == (True, True)


def key_before_key_ids(url: str) -> tuple[str, str]:
    """The private and public PEM in the single-row table of the revisions before key ids."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT private_key_pem, public_key_pem FROM signing_keys").fetchone()
    assert row is not None
    return row[0], row[1]


async def test_upgrade_keeps_the_key_and_the_tokens_it_signed_before(empty_database_url: str) -> None:
    url = empty_database_url
    migrate.upgrade(url, "0004")
    key = SigningKey.generate()
    with psycopg.connect(url) as conn:  # as the server made it before key ids
        conn.execute("INSERT INTO signing_keys (private_key_pem, public_key_pem) VALUES (%s, %s)",
                     (key.private_pem(), key.public_pem))
    now = int(time.time())
    issued_before = jwt.encode({"sub": "u", "iss": ISSUER, "nbf": now - 5, "exp": now + 600}, key.private_key,
                               algorithm="RS256")

    migrate.upgrade(url)
    conn = await asyncpg.connect(url)
    try:
        ring = KeyRing(conn, signs=True)
        await ring.load()
        assert (await ring.verifier(ISSUER).verify(issued_before))["sub"] == "u"
        issued_after = ring.issuer(ISSUER, 600).issue({"sub": "u"})
        assert jwt.get_unverified_header(issued_after)["kid"] == key_id(key.public_pem)
        assert await ring.verifier(ISSUER).verify(issued_after)
    finally:
        await conn.close()

    migrate.downgrade(url, "0004")
    private_pem, public_pem = key_before_key_ids(url)
    assert public_pem == key.public_pem
    assert SigningKey.from_pem("k", private_pem, None).public_pem == key.public_pem


async def test_downgrade_of_an_encrypted_key_needs_the_passphrase(empty_database_url: str, monkeypatch) -> None:
    url = empty_database_url
    monkeypatch.delenv("SIGNING_KEY_PASSPHRASE", raising=False)
    monkeypatch.delenv("SIGNING_KEY_PASSPHRASE_FILE", raising=False)
    migrate.upgrade(url, "0005")  # each migration commits on its own: start right above the one refused
    conn = await asyncpg.connect(url)
    try:
        kid = await ensure_signing_key(conn, "correct horse")
        public_pem = await conn.fetchval("SELECT public_key_pem FROM token_public_keys WHERE kid = $1", kid)
    finally:
        await conn.close()
    with pytest.raises(SigningKeyError, match="SIGNING_KEY_PASSPHRASE"):
        migrate.downgrade(url, "0004")
    assert migrate.current_revision(url) == "0005", "the refused downgrade changed nothing"

    monkeypatch.setenv("SIGNING_KEY_PASSPHRASE", "correct horse")
    migrate.downgrade(url, "0004")
    private_pem, stored_public = key_before_key_ids(url)
    assert stored_public == public_pem
    assert SigningKey.from_pem("k", private_pem, None).public_pem.strip() == public_pem.strip()


def test_revision_dates_move_to_their_own_table_and_back(empty_database_url: str) -> None:
    """Migration 0006 keeps every user's revision date, and its downgrade keeps the moved ones."""
    migrate.upgrade(empty_database_url, "0005")
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        user, kept = conn.execute(
            "INSERT INTO users (email, password_hash, key, revision_date)"
            " VALUES ('a@example.com', 'h', 'k', '2026-01-02 03:04:05.678+00') RETURNING id, revision_date").fetchone()

    migrate.upgrade(empty_database_url, "0006")
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        assert revision_of(conn, user) == kept
        # moved by hand: at 0006 the routines are already the newest text, which reads the
        # organizations' tables of later migrations
        conn.execute("UPDATE user_revisions SET revision_date = revision_date + interval '1 second'")
        moved = revision_of(conn, user)
        assert moved > kept

    migrate.downgrade(empty_database_url, "0005")
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        assert conn.execute("SELECT revision_date FROM users WHERE id = %s", (user,)).fetchone()[0] == moved
        assert conn.execute("SELECT to_regclass('user_revisions')").fetchone()[0] is None
        # and the earlier triggers work again
        conn.execute("INSERT INTO folders (user_id, name) VALUES (%s, 'g')", (user,))
        assert conn.execute("SELECT revision_date FROM users WHERE id = %s", (user,)).fetchone()[0] > moved


def revision_of(conn: psycopg.Connection, user: object) -> object:
    return conn.execute("SELECT revision_date FROM user_revisions WHERE user_id = %s", (user,)).fetchone()[0]
