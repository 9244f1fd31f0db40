"""The embedded PostgreSQL: current, shared between commands, stopped after a hard kill, safe as
root (an unprivileged server, nothing loosened outside DATA_FOLDER), and an old engine's data
copied into the new one."""

from __future__ import annotations

import asyncio
import os
import pwd
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import asyncpg
import pytest

from db.embedded import SERVICE_USER, EmbeddedError, EmbeddedPostgres, Engine, data_folder, default_data_folder
from tests.conftest import in_ci

ROOT = Path(__file__).resolve().parents[2]
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="the root case needs root")


def query(url: str, sql: str) -> object:
    async def run() -> object:
        conn = await asyncpg.connect(url)
        try:
            return await conn.fetchval(sql)
        finally:
            await conn.close()

    return asyncio.run(run())


def server_pid(folder: Path) -> int | None:
    try:
        pid = int((folder / "postgres" / "postmaster.pid").read_text().split("\n", 1)[0])
    except FileNotFoundError:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def test_runs_current_postgresql_and_the_last_command_stops_it(data_dir: Path) -> None:
    first = EmbeddedPostgres(data_dir)
    assert query(first.url, "SHOW server_version_num") >= "180000"
    assert query(first.url, "SHOW listen_addresses") == "", "a Unix socket only, no TCP port"
    second = EmbeddedPostgres(data_dir)  # another command while the first runs
    pid = server_pid(data_dir)
    first.stop()
    assert server_pid(data_dir) == pid, "still in use by the second command"
    assert query(second.url, "SELECT 1") == 1
    second.stop()
    assert server_pid(data_dir) is None


def test_a_server_left_by_a_killed_command_is_adopted_and_stopped(data_dir: Path) -> None:
    folder = data_dir
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from db.embedded import EmbeddedPostgres
            EmbeddedPostgres({str(folder)!r})
            print("ready", flush=True)
            time.sleep(600)
        """)], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert holder.stdout.readline().strip() == "ready"
    orphan = server_pid(folder)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert server_pid(folder) == orphan, "pg_ctl's server outlives a SIGKILL of its command"

    adopter = EmbeddedPostgres(folder)
    assert server_pid(folder) == orphan
    adopter.stop()
    assert server_pid(folder) is None, "the orphan stops with the command that adopted it"


def test_data_folder_is_absolute_wherever_the_command_runs(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert data_folder("relative") == tmp_path / "relative"
    assert data_folder(None).is_absolute()
    assert data_folder(None) == default_data_folder()
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    if os.geteuid() == 0:
        assert default_data_folder() == Path("/var/lib/pgwarden")
    else:
        assert default_data_folder() == tmp_path / "xdg" / "pgwarden"


@as_root
def test_as_root_the_server_is_unprivileged_and_parents_keep_their_modes(data_dir: Path) -> None:
    top = data_dir.parent
    parents = [top / "srv", top / "srv" / "vault"]
    parents[1].mkdir(parents=True)
    parents[1].chmod(0o751)
    modes = {parent: parent.stat().st_mode for parent in [top, *parents]}
    embedded = EmbeddedPostgres(parents[1] / "data")
    try:
        pid = server_pid(parents[1] / "data")
        owner = int(Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[0])
        assert pwd.getpwuid(owner).pw_name == SERVICE_USER
        assert owner != 0
        assert query(embedded.url, "SELECT 1") == 1
    finally:
        embedded.stop()
    assert {parent: parent.stat().st_mode for parent in modes} == modes
    assert (parents[1] / "data" / "postgres").stat().st_mode & 0o777 == 0o700


@as_root
def test_as_root_a_data_folder_behind_a_closed_folder_is_refused_in_one_line(tmp_path: Path) -> None:
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    with pytest.raises(EmbeddedError) as refused:
        EmbeddedPostgres(closed / "data")
    assert f"who cannot reach {closed / 'data'}" in str(refused.value)
    assert "\n" not in str(refused.value)
    assert closed.stat().st_mode & 0o777 == 0o700, "nothing outside DATA_FOLDER is loosened"


def test_a_cluster_of_the_old_engine_is_copied_into_the_new_one(data_dir: Path) -> None:
    old_engine = Engine.from_package("pgserver")
    if old_engine is None:
        # a test dependency: missing in CI is a failure, elsewhere a skip
        (pytest.fail if in_ci() else pytest.skip)("the old engine (pgserver) is not installed")
    folder = data_dir
    old = EmbeddedPostgres(folder, engine=old_engine)
    query(old.url, "CREATE TABLE kept AS SELECT 'vault item'::text AS name")
    old.stop()

    new = EmbeddedPostgres(folder)
    try:
        assert query(new.url, "SELECT name FROM kept") == "vault item"
        assert query(new.url, "SHOW server_version_num") >= "180000"
    finally:
        new.stop()
    assert (folder / "postgres-16" / "PG_VERSION").read_text().strip() == "16", "the old files are kept"


@as_root
def test_as_root_binaries_the_server_user_cannot_reach_are_copied_into_the_data_folder(data_dir: Path) -> None:
    # pip put the engine under a folder closed to others (a virtualenv in /root, say)
    import shutil

    current = Engine.current()
    closed = data_dir.parent / "root-home"
    closed.mkdir(mode=0o700)
    for part in current.root.parent.iterdir():
        if part.name.split(".")[0] == current.root.name:
            shutil.copytree(part, closed / part.name, symlinks=True)
    hidden = Engine(closed / current.bin.relative_to(current.root.parent), current.major)

    embedded = EmbeddedPostgres(data_dir, engine=hidden)
    try:
        assert query(embedded.url, "SELECT 1") == 1
        assert Path(f"/proc/{server_pid(data_dir)}/exe").resolve().is_relative_to(data_dir / "engine")
    finally:
        embedded.stop()
    assert closed.stat().st_mode & 0o777 == 0o700


def test_an_earlier_default_data_folder_is_named_not_passed_over(tmp_path: Path, monkeypatch) -> None:
    from db.embedded import resolve_database_url

    (tmp_path / "data" / "postgres").mkdir(parents=True)
    (tmp_path / "data" / "postgres" / "PG_VERSION").write_text("16\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "fresh"))
    monkeypatch.setattr("db.embedded.default_data_folder", lambda: tmp_path / "fresh" / "pgwarden")
    with pytest.raises(EmbeddedError) as refused:
        resolve_database_url(None, None)
    assert f"set DATA_FOLDER={tmp_path / 'data'} to keep using it" in str(refused.value)
    assert not (tmp_path / "fresh").exists(), "no new, empty database was made"
