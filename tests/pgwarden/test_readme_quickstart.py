"""The README's first command, word for word, from a copy of the checkout with nothing installed:
Debian's own python3 (PATH without any other), a fresh HOME, no virtualenv. It must bring up a
server a client logs into, as the current user and as an unprivileged one."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.support.bwclient import BitwardenClient
from tests.support.processes import free_port, wait_until
from tests.pgwarden.test_up import answers

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PATH = "/usr/bin:/bin"  # Debian's python3, as a fresh machine has it
UNPRIVILEGED = 65534  # nobody: exists on every Debian machine, owns nothing
INSTALL_TIMEOUT = 600  # pip installs every dependency into the new virtualenv first


def readme_command(section: str) -> str:
    readme = (ROOT / "README.md").read_text()
    after = readme.split(f"## {section}\n", 1)[1]
    return re.search(r"```sh\n(.*?)\n```", after, re.S).group(1).strip()


def copy_checkout(target: Path) -> Path:
    """What a clone holds: the tracked files and the new ones not ignored."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def run_quick_start(tmp: Path, *, user: int | None, extra: dict[str, str] | None = None) -> None:
    command = readme_command("Quick start")
    assert command == "./scripts/pgwarden up"
    checkout = copy_checkout(tmp / "pgwarden")
    home = tmp / "home"
    home.mkdir()
    if user is not None:
        for path in [tmp, *tmp.rglob("*")]:
            os.lchown(path, user, user)
    api_port, hub_port = free_port(), free_port()
    env = {"PATH": SYSTEM_PATH, "HOME": str(home), "LANG": "C.UTF-8", "API_ADDRESS": "127.0.0.1",
           "API_PORT": str(api_port), "WEBSOCKET_ADDRESS": "127.0.0.1", "WEBSOCKET_PORT": str(hub_port),
           **{name: value for name, value in os.environ.items() if name.startswith("PIP_")}, **(extra or {})}
    log = tmp / "quickstart.log"
    ids = {"user": user, "group": user, "extra_groups": []} if user is not None else {}
    with log.open("wb") as out:
        up = subprocess.Popen(["sh", "-c", f"exec {command}"], cwd=checkout, env=env, stdout=out,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, **ids)
    try:
        def tail() -> str:
            return log.read_text(errors="replace")[-4000:]

        try:
            wait_until(lambda: up.poll() is not None or answers(f"http://127.0.0.1:{api_port}/alive"),
                       "the API of the README's command", timeout=INSTALL_TIMEOUT)
        except TimeoutError:
            pytest.fail(f"no API after {INSTALL_TIMEOUT} s:\n{tail()}")
        assert up.poll() is None, tail()
        assert not (checkout / "build").exists(), "the checkout stays clean"

        created = subprocess.run(["./scripts/pgwarden", "user", "create", "--email", "first@example.com",
                                  "--password-stdin"], cwd=checkout, env=env, input=b"first password",
                                 capture_output=True, timeout=300, **ids)
        assert created.returncode == 0, created.stderr.decode()

        async def log_in() -> None:
            async with BitwardenClient(f"http://127.0.0.1:{api_port}") as client:
                await client.login("first@example.com", "first password")

        import asyncio

        asyncio.run(log_in())
    finally:
        if up.poll() is None:
            os.kill(up.pid, signal.SIGTERM)
        try:
            code = up.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
            raise
    assert code == 0, tail()


def test_the_readme_quick_start_as_the_current_user(tmp_path: Path, data_dir: Path) -> None:
    # root's default DATA_FOLDER is /var/lib/pgwarden, shared by the machine: a folder of the test's own
    extra = {"DATA_FOLDER": str(data_dir)} if os.geteuid() == 0 else None
    run_quick_start(tmp_path, user=None, extra=extra)


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root")
def test_the_readme_quick_start_as_an_unprivileged_user(data_dir: Path) -> None:
    # the user's own default DATA_FOLDER, under its fresh HOME
    workspace = data_dir.parent / "workspace"
    workspace.mkdir()
    run_quick_start(workspace, user=UNPRIVILEGED)
    assert (workspace / "home" / ".local" / "share" / "pgwarden" / "postgres" / "PG_VERSION").exists()
