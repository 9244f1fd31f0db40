"""`pgwarden user create`: the account it makes logs in like a client-registered one."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from tests.support.bwclient import BitwardenClient
from tests.vaultapi.conftest import ROOT_DIR
from vaultapi.admin import PasswordInputError, read_master_password


async def test_user_create_command_makes_an_account_a_client_can_unlock(database_url: str, api: str) -> None:
    env = {**os.environ, "DATABASE_URL": database_url}
    command = [sys.executable, "-m", "pgwarden.cli", "user", "create", "--email", "Grace@Example.com",
               "--password-stdin", "--name", "Grace"]
    created = subprocess.run(command, env=env, cwd=ROOT_DIR, input="grace's passphrase\n",
                             capture_output=True, text=True, timeout=120)
    assert created.returncode == 0, created.stderr
    assert "grace@example.com" in created.stdout

    async with BitwardenClient(api) as client:
        tokens = await client.login("grace@example.com", "grace's passphrase")
        assert tokens["KdfIterations"] == 600_000
        assert client.user_key is not None
        sync = (await client.get("/api/sync")).json()
        assert sync["profile"]["name"] == "Grace"
        assert sync["profile"]["accountKeys"]["publicKeyEncryptionKeyPair"]["publicKey"]
        folder = (await client.post("/api/folders", {"name": client.encrypt("works")})).json()
        assert client.decrypt(folder["name"]) == "works"

    again = subprocess.run(command, env=env, cwd=ROOT_DIR, input="grace's passphrase\n",
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 1
    assert "already exists" in again.stdout


def test_user_create_takes_no_password_on_the_command_line(database_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": database_url}
    base = [sys.executable, "-m", "pgwarden.cli", "user", "create", "--email", "eve@example.com"]
    # on the command line a password is visible to every user of the machine (ps, /proc)
    refused = subprocess.run([*base, "--password", "visible to all"], env=env, cwd=ROOT_DIR,
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "--password-stdin" in refused.stderr
    assert "visible to all" not in refused.stderr + refused.stdout
    # no terminal to prompt on and no --password-stdin: refused, not read silently from the pipe
    no_terminal = subprocess.run(base, env=env, cwd=ROOT_DIR, input="from a pipe\n",
                                 capture_output=True, text=True, timeout=120)
    assert no_terminal.returncode == 2 and "--password-stdin" in no_terminal.stderr
    empty = subprocess.run([*base, "--password-stdin"], env=env, cwd=ROOT_DIR, input="\n",
                           capture_output=True, text=True, timeout=120)
    assert empty.returncode == 2 and "empty" in empty.stderr


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _asker(*answers: str) -> Callable[[str], str]:
    replies = iter(answers)
    return lambda prompt: next(replies)


def test_master_password_from_stdin_drops_only_the_line_end() -> None:
    assert read_master_password(io.StringIO("pass word\n"), from_stdin=True) == "pass word"
    assert read_master_password(io.StringIO(" spaced \r\n"), from_stdin=True) == " spaced "
    assert read_master_password(io.StringIO("no newline"), from_stdin=True) == "no newline"
    for bad in ("", "\n", "two\nlines\n"):
        with pytest.raises(PasswordInputError):
            read_master_password(io.StringIO(bad), from_stdin=True)


def test_master_password_is_asked_twice_on_a_terminal() -> None:
    assert read_master_password(_Terminal(), from_stdin=False, ask=_asker("secret", "secret")) == "secret"
    with pytest.raises(PasswordInputError, match="do not match"):
        read_master_password(_Terminal(), from_stdin=False, ask=_asker("secret", "secreT"))
    with pytest.raises(PasswordInputError, match="empty"):
        read_master_password(_Terminal(), from_stdin=False, ask=_asker("", ""))
    with pytest.raises(PasswordInputError, match="--password-stdin"):
        read_master_password(io.StringIO("piped"), from_stdin=False, ask=_asker("x", "x"))


def _with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    user = parts.username or "postgres"
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))


def test_pgwarden_api_serves_and_logs_address_without_the_password(database_url: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "DATABASE_URL": _with_password(database_url, "s3cret-pw"),
           "API_ADDRESS": "127.0.0.1", "API_PORT": str(port)}
    process = subprocess.Popen([sys.executable, "-m", "pgwarden.cli", "api"], env=env, cwd=ROOT_DIR,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(200):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/alive", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        else:
            raise AssertionError("pgwarden api did not come up")
        assert httpx.get(f"http://127.0.0.1:{port}/api/config").json()["object"] == "config"
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert f"127.0.0.1:{port}" in output
    assert "***" in output and "s3cret-pw" not in output
