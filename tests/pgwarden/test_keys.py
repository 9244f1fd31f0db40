"""`pgwarden keys`, and the API's start on a database whose signing key is encrypted."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import asyncpg
import httpx

from core.keystore import ensure_signing_key, signing_kid
from tests.conftest import ROOT
from tests.support.processes import ManagedProcess, free_port, wait_until

PASSPHRASE = "correct horse battery staple"


def pgwarden(*args: str, database_url: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SIGNING_KEY_PASSPHRASE")}
    environ.update(DATABASE_URL=database_url, **env)
    return subprocess.run([sys.executable, "-m", "pgwarden.cli", *args], env=environ, capture_output=True,
                          text=True, timeout=timeout)


async def encrypt_keys(db: asyncpg.Connection) -> str:
    await db.execute("DELETE FROM token_public_keys")
    return await ensure_signing_key(db, PASSPHRASE)


async def test_keys_list_shows_ids_dates_and_states_never_a_private_key(database_url: str, db) -> None:
    kid = await signing_kid(db)
    done = pgwarden("keys", "list", database_url=database_url)
    assert done.returncode == 0, done.stderr
    assert kid in done.stdout and "signing" in done.stdout and "created" in done.stdout
    private_pem = await db.fetchval("SELECT private_key_pem FROM token_private_keys")
    body = private_pem.splitlines()[1]
    assert "PRIVATE" not in done.stdout + done.stderr and body not in done.stdout + done.stderr


async def test_keys_rotate_keeps_the_old_key_verifying_for_the_longest_token_lifetime(database_url: str, db) -> None:
    old = await signing_kid(db)
    done = pgwarden("keys", "rotate", database_url=database_url, ACCESS_TOKEN_LIFETIME="7200")
    assert done.returncode == 0, done.stderr
    new = await signing_kid(db)
    assert new != old and new in done.stdout and old in done.stdout
    retires_at = await db.fetchval("SELECT retires_at FROM token_public_keys WHERE kid = $1", old)
    grace = retires_at - datetime.now(timezone.utc)
    assert timedelta(hours=2) < grace < timedelta(hours=2, minutes=5), grace
    listed = pgwarden("keys", "list", database_url=database_url).stdout
    assert "verifying until" in listed and "signing" in listed


async def test_keys_rotate_retire_now_stops_the_old_keys_at_once(database_url: str, db) -> None:
    old = await signing_kid(db)
    done = pgwarden("keys", "rotate", "--retire-now", database_url=database_url)
    assert done.returncode == 0, done.stderr
    assert await db.fetchval("SELECT retires_at <= now() FROM token_public_keys WHERE kid = $1", old)
    assert "retired" in pgwarden("keys", "list", database_url=database_url).stdout


async def test_keys_rotate_of_encrypted_keys_without_the_passphrase_is_a_clear_refusal(database_url: str, db) -> None:
    await encrypt_keys(db)
    done = pgwarden("keys", "rotate", database_url=database_url)
    assert done.returncode == 2
    assert "SIGNING_KEY_PASSPHRASE" in done.stderr and "Traceback" not in done.stderr
    assert await db.fetchval("SELECT count(*) FROM token_public_keys") == 1
    done = pgwarden("keys", "rotate", database_url=database_url, SIGNING_KEY_PASSPHRASE=PASSPHRASE)
    assert done.returncode == 0, done.stderr


async def test_api_on_encrypted_keys_without_the_passphrase_refuses_to_start(database_url: str, db) -> None:
    await encrypt_keys(db)
    done = pgwarden("api", database_url=database_url, API_ADDRESS="127.0.0.1", API_PORT=str(free_port()))
    assert done.returncode == 2
    assert "encrypted" in done.stderr and "SIGNING_KEY_PASSPHRASE" in done.stderr
    assert "Traceback" not in done.stderr
    done = pgwarden("api", database_url=database_url, API_ADDRESS="127.0.0.1", API_PORT=str(free_port()),
                    SIGNING_KEY_PASSPHRASE="wrong")
    assert done.returncode == 2 and "does not decrypt" in done.stderr and "Traceback" not in done.stderr
    assert "wrong" not in done.stderr.replace("does not decrypt", "")


async def test_api_on_encrypted_keys_starts_with_the_passphrase_from_a_file(
        database_url: str, db, tmp_path: Path) -> None:
    await encrypt_keys(db)
    secret = tmp_path / "passphrase"
    secret.write_text(PASSPHRASE + "\n")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNING_KEY_PASSPHRASE")}
    env.update(DATABASE_URL=database_url, API_ADDRESS="127.0.0.1", API_PORT=str(port),
               SIGNING_KEY_PASSPHRASE_FILE=str(secret))
    api = ManagedProcess("api", [sys.executable, "-m", "pgwarden.cli", "api"], tmp_path / "api.log", env=env)
    try:
        wait_until(lambda: _answers(f"http://127.0.0.1:{port}/alive"), "the API", timeout=60, alive=api)
        assert PASSPHRASE not in api.tail(200)
    finally:
        api.stop()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_readme_documents_the_key_and_role_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    for command in ("pgwarden keys list", "pgwarden keys rotate", "pgwarden db grant-hub"):
        assert command in readme, command
    security = (ROOT / "docs" / "security.md").read_text()
    assert "## Database roles" in security and "pgwarden db grant-hub" in security
