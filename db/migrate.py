"""Run the Alembic migrations that live in this package, against any PostgreSQL URL."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url

__all__ = ["alembic_config", "current_revision", "downgrade", "is_current", "upgrade"]

_MIGRATIONS = Path(__file__).with_name("migrations")


def _sqlalchemy_url(dsn: str) -> str:
    """A libpq URL (postgresql://...) as SQLAlchemy names it with the psycopg 3 driver."""
    url = make_url(_hosts_in_query(dsn))
    return url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def _hosts_in_query(dsn: str) -> str:
    """``postgresql://u@h1:5432,h2:5433/db`` as ``postgresql://u@/db?host=h1:5432&host=h2:5433``:
    SQLAlchemy reads one host:port in the authority, several only as host parameters."""
    parts = urlsplit(dsn)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    if "," not in hosts:
        return dsn
    query = [("host", host) for host in hosts.split(",")] + parse_qsl(parts.query)
    netloc = f"{userinfo}@" if userinfo else ""
    # built by hand: urlunsplit drops the // of an empty authority
    return f"{parts.scheme}://{netloc}{parts.path}?{urlencode(query, safe=':')}"


def alembic_config(dsn: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    # ConfigParser interpolation: a literal % in a password must be doubled.
    config.set_main_option("sqlalchemy.url", _sqlalchemy_url(dsn).replace("%", "%%"))
    return config


def upgrade(dsn: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(dsn), revision)


def downgrade(dsn: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(dsn), revision)


def current_revision(dsn: str) -> str | None:
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine

    # no prepared statements: the URL may lead to a transaction pooler
    engine = create_engine(_sqlalchemy_url(dsn), connect_args={"prepare_threshold": None})
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def is_current(dsn: str) -> bool:
    """Whether the database is at the newest revision there is."""
    return current_revision(dsn) == ScriptDirectory.from_config(alembic_config(dsn)).get_current_head()
