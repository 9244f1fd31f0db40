"""Where the database is: DATABASE_URL when given, else an embedded PostgreSQL.

The embedded server (the pgserver package: real PostgreSQL binaries) keeps its files in
<data folder>/postgres between runs and listens on a Unix socket only. As root it runs the
server as an unprivileged system user, since PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

__all__ = ["EmbeddedPostgres", "resolve_database_url"]

log = logging.getLogger(__name__)


class EmbeddedPostgres:
    """A PostgreSQL server in a folder of ours; started (or reused) on creation."""

    def __init__(self, data_folder: str | Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
            import pgserver

        folder = Path(data_folder).resolve() / "postgres"
        folder.parent.mkdir(parents=True, exist_ok=True)
        log.info("starting embedded PostgreSQL in %s", folder)
        self.folder = folder
        self._server = pgserver.get_server(folder, cleanup_mode="stop")

    @property
    def url(self) -> str:
        return self._server.get_uri("postgres")

    def stop(self) -> None:
        self._server.cleanup()


def resolve_database_url(database_url: str | None, data_folder: str | Path) -> tuple[str, EmbeddedPostgres | None]:
    """The URL to use, and the embedded server behind it if one was started (stop it when done)."""
    if database_url:
        return database_url, None
    embedded = EmbeddedPostgres(data_folder)
    return embedded.url, embedded
