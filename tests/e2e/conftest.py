"""Fixtures for the end-to-end tests: a test CA per session, a database per module, and the
logs of every process a failed test started, shown in its report."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import PostgresServer, with_database
from tests.support.listen import EventListener
from tests.support.processes import RUNNING
from tests.support.tls import TlsFiles, make_certificates

_databases = itertools.count()


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A CA made for this session and a certificate for localhost and 127.0.0.1."""
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def module_database_url(pg_server: PostgresServer, pg_template: str) -> Iterator[str]:
    """A fresh migrated database shared by the tests of one module (one stack per module)."""
    name = f"pgwarden_e2e_{os.getpid()}_{next(_databases)}"
    with pg_server.janitor(name, template=pg_template):
        yield with_database(pg_server.url, name)


@pytest.fixture
async def sql(module_database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain SQL session on the module's database, as an admin's psql would be."""
    conn = await asyncpg.connect(module_database_url)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def events(module_database_url: str) -> AsyncIterator[EventListener]:
    """Every event the module's database publishes from now on."""
    listener = await EventListener.connect(module_database_url)
    try:
        yield listener
    finally:
        await listener.close()


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """Where this module's processes write their logs."""
    return tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for process in RUNNING:
            report.sections.append((f"log of {process.name} ({process.log})", process.tail()))
