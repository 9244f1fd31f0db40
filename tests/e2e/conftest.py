"""Fixtures for the end-to-end tests: a test CA per session, a database and a log folder per
module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PostgresServer, template_copy
from tests.support.tls import TlsFiles, make_certificates


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A CA made for this session and a certificate for localhost and 127.0.0.1."""
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def database_url(pg_server: PostgresServer, pg_template: str) -> Iterator[str]:
    """One migrated database shared by the tests of a module (one stack per module); the
    `db` and `events` fixtures of tests/conftest.py follow it."""
    with template_copy(pg_server, pg_template) as url:
        yield url


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """Where this module's processes write their logs."""
    return tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
