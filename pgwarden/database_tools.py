"""`pgwarden psql`, `db-url`, `backup` and `restore`: the database in the operator's hands.

They work on DATABASE_URL when it is set, else on the embedded database in DATA_FOLDER (started
for the command, and stopped after it unless `pgwarden up` uses it). pg_dump and pg_restore are
those of the server's own major version (the embedded engine's, or a system one such as
/usr/lib/postgresql/15/bin), else the nearest newer one; psql is the system's when there is one.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import asyncpg

from core.config import Config

__all__ = ["backup_command", "db_url_command", "events_command", "psql_command", "restore_command"]


class ToolError(RuntimeError):
    """A PostgreSQL program failed or is missing; the message is one line for the operator."""


def psql_command(config: Config, arguments: list[str]) -> int:
    from core.database import opened

    program = shutil.which("psql") if config.database_url else None
    with opened(config) as url:
        return subprocess.run([program or str(_engine_tool("psql")), *arguments, url]).returncode


def events_command(config: Config) -> int:
    """Each event on the channel the hub listens to, as it arrives, until Ctrl-C."""
    from core.database import opened
    from db.events import CHANNEL

    async def listen(url: str) -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.add_listener(CHANNEL, lambda _conn, _pid, _channel, payload: print(payload, flush=True))
            print(f"listening on {CHANNEL}; Ctrl-C to stop", file=sys.stderr, flush=True)
            await asyncio.Event().wait()
        finally:
            await conn.close()

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stops as Ctrl-C does, database included
    with opened(config) as url:
        try:
            asyncio.run(listen(url))
        except KeyboardInterrupt:
            pass
    return 0


def db_url_command(config: Config) -> int:
    """The URL other tools (psql, a script, a BI tool) connect with."""
    if config.database_url:
        print(config.database_url)
        return 0
    from db.embedded import data_folder, running_url

    folder = data_folder(config.data_folder)
    url = running_url(folder)
    if url is None:
        print(f"pgwarden db-url: the embedded database in {folder} is not running; start `pgwarden up`"
              " (or use `pgwarden psql`, which starts it for its session)", file=sys.stderr)
        return 1
    print(url)
    return 0


def backup_command(config: Config, target: str) -> int:
    """A consistent dump (one snapshot) in pg_dump's custom format, readable by the owner only."""
    from core.database import opened

    path = Path(target).absolute()
    if path.exists():
        print(f"pgwarden backup: {path} exists already; choose a new file", file=sys.stderr)
        return 1
    with opened(config) as url:
        old_umask = os.umask(0o077)
        try:
            _run(_matching(url, "pg_dump"), ["--format=custom", "--dbname", url, "--file", str(path)])
        finally:
            os.umask(old_umask)
    print(f"backed up to {path} ({path.stat().st_size} bytes)")
    return 0


def restore_command(config: Config, source: str) -> int:
    """Into an empty database only, then migrated to the current schema."""
    from core.database import opened, prepare

    path = Path(source).absolute()
    if not path.is_file():
        print(f"pgwarden restore: no file {path}", file=sys.stderr)
        return 1
    with opened(config) as url:
        tables = asyncio.run(_table_count(url))
        if tables:
            print("pgwarden restore: the database is not empty (it has tables); restore into a new one: a new"
                  " DATA_FOLDER for the embedded database, or a new database in DATABASE_URL", file=sys.stderr)
            return 1
        # owners and grants are the old server's: the restoring role owns everything here
        _run(_matching(url, "pg_restore"), ["--exit-on-error", "--single-transaction", "--no-owner", "--no-privileges",
                            "--dbname", url, str(path)])
        prepare(url, config.signing_key_secret())
    print(f"restored {path}; a hub role of its own needs `pgwarden db grant-hub ROLE` again")
    return 0


async def _table_count(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(
            "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')")
    finally:
        await conn.close()


def _engine_tool(name: str) -> Path:
    from db.embedded import Engine

    return Engine.current().tool(name)


def _matching(url: str, name: str) -> Path:
    """The program `name` of the server's major version, else of the nearest newer one (a newer
    pg_restore writes settings an older server refuses, so the same version comes first)."""
    server = asyncio.run(_server_major(url))
    found: dict[int, Path] = {}
    for program in [_engine_tool(name), *sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}")),
                    shutil.which(name)]:
        if program is None or not Path(program).exists():
            continue
        version = subprocess.run([str(program), "--version"], capture_output=True, text=True).stdout.split()
        if version and version[-1].split(".")[0].isdigit():
            found.setdefault(int(version[-1].split(".")[0]), Path(program))
    usable = sorted(major for major in found if major >= server)
    if not usable:
        raise ToolError(f"no {name} for PostgreSQL {server}: install it (Debian: postgresql-client-{server})")
    return found[usable[0]]


async def _server_major(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return conn.get_server_version().major
    finally:
        await conn.close()


def _run(program: Path, arguments: list[str]) -> None:
    result = subprocess.run([str(program), *arguments], capture_output=True, text=True)
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        raise ToolError(f"{program.name} failed: {lines[-1] if lines else f'exit code {result.returncode}'}")
