"""Database fixtures shared by every test.

The PostgreSQL server is the one named by PGWARDEN_TEST_DATABASE_URL (CI points it at the
machine's server), else an embedded one started in .tmp/. A migrated template database is built
once per session with pytest-postgresql's janitor, and each test gets a fresh copy of it.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from pytest_postgresql.janitor import DatabaseJanitor

from core.database import prepare
from tests.support.listen import EventListener
from tests.support.processes import RUNNING

ROOT = Path(__file__).resolve().parent.parent
_copies = itertools.count()


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def with_database(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + dbname))


class PostgresServer:
    """Connection facts of the server the tests use."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.url = url
        query = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
        self.host = query.get("host") or parts.hostname or "127.0.0.1"
        self.port = parts.port or 5432
        self.user = parts.username or "postgres"
        self.password = parts.password or ""

    def janitor(self, dbname: str, template: str | None = None, as_template: bool = False) -> DatabaseJanitor:
        return DatabaseJanitor(
            user=self.user,
            host=self.host,
            port=self.port,
            dbname=dbname,
            template_dbname=template,
            as_template=as_template,
            password=self.password,
        )


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A DATA_FOLDER path for an embedded server of the test's own. As root that server runs as
    another user, who must pass through every folder above it: pytest's tmp_path is closed."""
    parent = Path(tempfile.mkdtemp(prefix="pgwarden-test-"))
    parent.chmod(0o711)
    try:
        yield parent / "data"
    finally:
        shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    url = os.environ.get("PGWARDEN_TEST_DATABASE_URL")
    if url:
        yield PostgresServer(url)
        return
    from db.embedded import EmbeddedPostgres

    embedded = EmbeddedPostgres(ROOT / ".tmp" / "test-data")
    try:
        yield PostgresServer(embedded.url)
    finally:
        embedded.stop()


@pytest.fixture(scope="session")
def pg_template(pg_server: PostgresServer) -> Iterator[str]:
    """Name of a migrated template database (with a signing key pair)."""
    name = f"pgwarden_template_{os.getpid()}"
    janitor = pg_server.janitor(name, as_template=True)
    janitor.drop()
    janitor.init()
    try:
        prepare(with_database(pg_server.url, name))
        yield name
    finally:
        janitor.drop()


@contextmanager
def template_copy(pg_server: PostgresServer, pg_template: str) -> Iterator[str]:
    """URL of a fresh copy of the migrated template, dropped on exit."""
    name = f"pgwarden_test_{os.getpid()}_{next(_copies)}"
    with pg_server.janitor(name, template=pg_template):
        yield with_database(pg_server.url, name)


@pytest.fixture
def database_url(pg_server: PostgresServer, pg_template: str) -> Iterator[str]:
    """URL of a fresh, migrated database for this test alone (tests/e2e: for its module)."""
    with template_copy(pg_server, pg_template) as url:
        yield url


@pytest.fixture
def empty_database_url(pg_server: PostgresServer) -> Iterator[str]:
    """URL of a database with nothing in it, not even the schema."""
    name = f"pgwarden_empty_{os.getpid()}_{next(_copies)}"
    janitor = pg_server.janitor(name)
    janitor.drop()
    with janitor:
        yield with_database(pg_server.url, name)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain SQL session on the test database, as an admin's psql would be."""
    conn = await asyncpg.connect(database_url)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def events(database_url: str) -> AsyncIterator[EventListener]:
    """A LISTEN connection that collects every published event."""
    listener = await EventListener.connect(database_url)
    try:
        yield listener
    finally:
        await listener.close()


@pytest.fixture(autouse=True, scope="session")
def _no_process_outlives_the_run() -> Iterator[None]:
    """Stop whatever a failed test left running (servers, proxies, clients)."""
    yield
    for process in reversed(list(RUNNING)):
        process.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """A failed test's report shows the logs of the processes still running."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for process in RUNNING:
            report.sections.append((f"log of {process.name} ({process.log})", process.tail()))
