"""PostgreSQL servers of a test's own: a primary and streaming standbys on free loopback ports,
and PgBouncer in front of a server. Never the machine's main cluster.

Built with the PostgreSQL 15 binaries of the Debian packages (initdb, pg_basebackup, pg_ctl) in
a folder of their own under /tmp; run as the ``postgres`` system user when the tests run as
root, since PostgreSQL and PgBouncer refuse to run as root.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import asyncpg

from tests.support.processes import ManagedProcess, free_port, wait_until
from tests.support.tools import require, require_tool

__all__ = ["PG_BIN", "PgBouncer", "Server", "Workspace"]

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _server_user() -> str | None:
    return "postgres" if os.getuid() == 0 else None


class Workspace:
    """A folder the server user owns, removed with everything in it by ``remove``."""

    def __init__(self, logs: Path) -> None:
        require(PG_BIN / "initdb", f"the PostgreSQL 15 server binaries are not in {PG_BIN}")
        self.logs = logs
        self.user = _server_user()
        self.folder = Path(tempfile.mkdtemp(prefix="pgwarden-cluster-"))
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)

    def run(self, *argv: str) -> None:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, user=self.user,
                              group=self.user, cwd=self.folder)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed:\n{done.stdout}{done.stderr}")

    def write(self, path: Path, text: str) -> None:
        path.write_text(text)
        if self.user is not None:
            shutil.chown(path, self.user, self.user)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class Server:
    """One PostgreSQL server (``postgres -D``) as a managed process on a loopback port."""

    def __init__(self, workspace: Workspace, name: str, port: int) -> None:
        self.workspace = workspace
        self.name = name
        self.port = port
        self.data = workspace.folder / name
        self.process: ManagedProcess | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@{self.address}/{dbname}"

    @classmethod
    def primary(cls, workspace: Workspace, name: str = "primary", *, durable: bool = False) -> Server:
        """A new primary; ``durable``: it flushes to disk at commit (benchmarks), else not (tests)."""
        server = cls(workspace, name, free_port())
        workspace.run(str(PG_BIN / "initdb"), "-D", str(server.data), "-U", "postgres", "--auth=trust",
                      "--no-sync", "-E", "UTF8", "--locale=C.UTF-8")
        with (server.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {server.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{workspace.folder}'\n"
                f"wal_level = replica\nmax_wal_senders = 5\nhot_standby = on\nfsync = {'on' if durable else 'off'}\n"
                "max_connections = 200\n")
        with (server.data / "pg_hba.conf").open("a") as hba:
            hba.write("host replication postgres 127.0.0.1/32 trust\n")
        return server.start()

    def standby(self, name: str = "standby") -> Server:
        """A streaming standby of this (running) server, started and replicating."""
        server = Server(self.workspace, name, free_port())
        self.workspace.run(str(PG_BIN / "pg_basebackup"), "-D", str(server.data), "-h", "127.0.0.1",
                           "-p", str(self.port), "-U", "postgres", "-X", "stream", "-R", "--no-sync", "-c", "fast")
        with (server.data / "postgresql.conf").open("a") as conf:
            conf.write(f"port = {server.port}\n")
        return server.start()

    def start(self) -> Server:
        self.process = ManagedProcess(self.name, [str(PG_BIN / "postgres"), "-D", str(self.data)],
                                      self.workspace.logs / f"{self.name}.log", user=self.workspace.user)
        wait_until(self._accepts, f"{self.name} to accept connections on {self.port}", alive=self.process)
        return self

    def _accepts(self) -> bool:
        done = subprocess.run([str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                              capture_output=True)
        return done.returncode == 0

    def promote(self) -> None:
        self.workspace.run(str(PG_BIN / "pg_ctl"), "promote", "-w", "-D", str(self.data))

    def stop(self, mode: str = "fast") -> None:
        """pg_ctl stop: fast ends every session at once; immediate is a crash."""
        if self.process is not None and not self.process.exited():
            self.workspace.run(str(PG_BIN / "pg_ctl"), "stop", "-w", "-m", mode, "-D", str(self.data))
            self.process.stop()

    async def is_primary(self) -> bool:
        conn = await asyncpg.connect(self.url())
        try:
            return not await conn.fetchval("SELECT pg_is_in_recovery()")
        finally:
            await conn.close()


class PgBouncer:
    """PgBouncer in front of one server, with one database name per pool mode:
    ``<dbname>`` in transaction mode (pool_size servers) and ``<dbname>_session`` in session mode
    (a server per client, up to 20)."""

    def __init__(self, workspace: Workspace, server: str, dbname: str, pool_size: int = 3) -> None:
        binary = shutil.which("pgbouncer") or require_tool("/usr/sbin/pgbouncer")
        self.port = free_port()
        self.dbname = dbname
        host, port = server.rsplit(":", 1)
        folder = workspace.folder / f"pgbouncer-{self.port}"
        folder.mkdir()
        if workspace.user is not None:
            shutil.chown(folder, workspace.user, workspace.user)
        users = folder / "users.txt"
        workspace.write(users, '"postgres" ""\n')
        ini = folder / "pgbouncer.ini"
        workspace.write(ini, f"""[databases]
{dbname} = host={host} port={port} dbname={dbname} pool_mode=transaction
{dbname}_session = host={host} port={port} dbname={dbname} pool_mode=session pool_size=20

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = trust
auth_file = {users}
default_pool_size = {pool_size}
max_client_conn = 500
pidfile = {folder}/pgbouncer.pid
""")
        self.process = ManagedProcess(f"pgbouncer-{self.port}", [binary, str(ini)],
                                      workspace.logs / f"pgbouncer-{self.port}.log", user=workspace.user)
        wait_until(self._listening, f"pgbouncer to listen on {self.port}", alive=self.process)

    def _listening(self) -> bool:
        import socket

        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.port)) == 0

    def url(self, mode: str = "transaction") -> str:
        dbname = self.dbname if mode == "transaction" else f"{self.dbname}_session"
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def stop(self) -> None:
        self.process.stop()
