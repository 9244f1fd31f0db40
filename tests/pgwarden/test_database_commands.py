"""`pgwarden backup`, `restore`, `psql` and `db-url`, run as an operator runs them."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from tests.support.bwclient import BitwardenClient
from tests.support.processes import free_port, wait_until
from tests.pgwarden.test_up import answers, start_up, terminate

ROOT = Path(__file__).resolve().parents[2]
EMAIL = "backup@example.com"
PASSWORD = "a passphrase to keep"


def pgwarden(env: dict[str, str], *args: str, cwd: Path | None = None, stdin: str | None = None
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pgwarden.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env}, cwd=cwd, input=stdin, timeout=180)


def without_database_url(**settings: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name != "DATABASE_URL"}
    return {**env, **settings}


async def test_backup_then_restore_into_an_empty_database_logs_in(
        database_url: str, empty_database_url: str, tmp_path: Path) -> None:
    source = {"DATABASE_URL": database_url}
    created = pgwarden(source, "user", "create", "--email", EMAIL, "--password-stdin", stdin=PASSWORD)
    assert created.returncode == 0, created.stderr
    dump = tmp_path / "vault.dump"
    done = pgwarden(source, "backup", str(dump))
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(dump.stat().st_mode) == 0o600, "a backup is readable by its owner only"
    assert pgwarden(source, "backup", str(dump)).returncode == 1, "an existing file is never overwritten"

    target = {"DATABASE_URL": empty_database_url}
    restored = pgwarden(target, "restore", str(dump))
    assert restored.returncode == 0, restored.stderr
    again = pgwarden(target, "restore", str(dump))
    assert again.returncode == 1 and "not empty" in again.stderr

    port, hub_port = free_port(), free_port()
    api = subprocess.Popen([sys.executable, "-m", "pgwarden.cli", "api"], env={
        **os.environ, **target, "API_ADDRESS": "127.0.0.1", "API_PORT": str(port), "WEBSOCKET_PORT": str(hub_port)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: answers(f"http://127.0.0.1:{port}/alive"), "the API on the restored database")
        async with BitwardenClient(f"http://127.0.0.1:{port}") as client:
            await client.login(EMAIL, PASSWORD)
            assert (await client.get("/api/sync")).json()["profile"]["email"] == EMAIL
    finally:
        api.terminate()
        api.wait(30)


def test_embedded_commands_work_from_any_folder_and_db_url_follows_up(tmp_path: Path, data_dir: Path) -> None:
    elsewhere = tmp_path / "somewhere else"
    elsewhere.mkdir()
    env = without_database_url(DATA_FOLDER=str(data_dir))
    stopped = pgwarden(env, "db-url", cwd=elsewhere)
    assert stopped.returncode == 1 and "is not running" in stopped.stderr and "Traceback" not in stopped.stderr

    assert pgwarden(env, "migrate", cwd=elsewhere).returncode == 0
    shell = pgwarden(env, "psql", "--", "-At", "-c", "SELECT count(*) FROM users", cwd=elsewhere)
    assert shell.returncode == 0, shell.stderr
    assert shell.stdout.strip() == "0"
    assert not (elsewhere / "data").exists(), "nothing is made in the current folder"

    api_port, hub_port = free_port(), free_port()
    up = start_up(data_dir, api_port, hub_port, tmp_path / "up.log")
    try:
        url = pgwarden(env, "db-url", cwd=elsewhere)
        assert url.returncode == 0, url.stderr
        watched = subprocess.run(["psql", url.stdout.strip(), "-At", "-c", "SELECT current_database()"],
                                 capture_output=True, text=True, timeout=60)
        assert watched.stdout.strip() == "postgres", watched.stderr
    finally:
        assert terminate(up) == 0


def test_a_command_on_an_unreachable_database_fails_in_one_line(tmp_path: Path) -> None:
    done = pgwarden({"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}, "user", "list", cwd=tmp_path)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Connect call failed" in done.stderr or "refused" in done.stderr


def test_the_readme_watch_example_shows_a_psql_update_as_it_happens(database_url: str, tmp_path: Path) -> None:
    env = {"DATABASE_URL": database_url}
    readme = (ROOT / "README.md").read_text()
    block = readme.split("Watch it yourself", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    watch, update = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert watch == "./scripts/pgwarden events"
    made = pgwarden(env, "psql", "-At", "-c",
                    "WITH u AS (INSERT INTO users (email, password_hash, key) VALUES ('w@example.com', 'x', 'k')"
                    " RETURNING id) INSERT INTO folders (user_id, name) SELECT id, 'n' FROM u RETURNING id")
    folder_id = made.stdout.split()[0]
    listener = subprocess.Popen([sys.executable, "-m", "pgwarden.cli", *watch.split()[1:]], text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env={**os.environ, "PYTHONPATH": str(ROOT), **env})
    try:
        assert "listening on pgwarden_events" in listener.stderr.readline()
        words = update.replace("'...'", f"'{folder_id}'").split(maxsplit=3)
        assert words[:3] == ["./scripts/pgwarden", "psql", "-c"]
        done = pgwarden(env, "psql", "-c", words[3].strip('"'))
        assert done.returncode == 0, done.stderr
        assert folder_id in listener.stdout.readline()
    finally:
        listener.terminate()
        assert listener.wait(30) == 0
