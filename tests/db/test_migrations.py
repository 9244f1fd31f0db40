"""Migrations go up, down and up again on an empty database."""

from __future__ import annotations

import os
from collections.abc import Iterator

import psycopg
import pytest

from db import migrate
from tests.conftest import PostgresServer, with_database

VAULT_TABLES = {"users", "devices", "folders", "ciphers", "sync_events", "signing_keys"}


@pytest.fixture
def empty_database_url(pg_server: PostgresServer) -> Iterator[str]:
    name = f"pgwarden_empty_{os.getpid()}"
    janitor = pg_server.janitor(name)
    janitor.drop()
    with janitor:
        yield with_database(pg_server.url, name)


def tables_and_triggers(url: str) -> tuple[set[str], set[str]]:
    with psycopg.connect(url) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        triggers = {r[0] for r in conn.execute("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")}
    return tables, triggers


def test_migrations_up_down_up(empty_database_url: str) -> None:
    migrate.upgrade(empty_database_url)
    tables, triggers = tables_and_triggers(empty_database_url)
    assert VAULT_TABLES <= tables
    assert {"ciphers_inserted", "ciphers_updated", "ciphers_deleted", "folders_deleted", "sync_events_added"} <= triggers
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
        keys = conn.execute("SELECT count(*) FROM signing_keys").fetchone()[0]
    assert keys == 1, "migrate also makes the token signing key pair"
    assert migrate.current_revision(empty_database_url) == migrate_head()


def migrate_head() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(migrate.alembic_config("postgresql://x@localhost/x")).get_current_head()


def test_migrate_command_on_embedded_postgres_keeps_data(tmp_path) -> None:
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["DATA_FOLDER"] = str(tmp_path / "data")
    for _ in range(2):  # the second run finds the same cluster, already at head
        done = subprocess.run(
            [sys.executable, "-m", "pgwarden.cli", "migrate"], env=env, capture_output=True, text=True, timeout=180
        )
        assert done.returncode == 0, done.stderr
        assert f"database at revision {migrate_head()}" in done.stderr
    assert (tmp_path / "data" / "postgres" / "PG_VERSION").exists()


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
        conn.execute("INSERT INTO folders (user_id, name) VALUES (%s, 'f')", (user,))
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
    return conn.execute("SELECT revision_date FROM pgwarden_user_revisions(ARRAY[%s::uuid])", (user,)).fetchone()[0]
