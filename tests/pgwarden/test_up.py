"""`pgwarden up` from a clean data folder: embedded database, API and hub, clean stop, data kept."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import websockets

from tests.support.bwclient import BitwardenClient
from tests.support.processes import ManagedProcess, free_port, wait_until

EMAIL = "up@example.com"
PASSWORD = "correct horse battery staple"


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def start_up(data: Path, api_port: int, hub_port: int, log: Path) -> ManagedProcess:
    env = {name: value for name, value in os.environ.items() if name != "DATABASE_URL"}
    env.update(
        DATA_FOLDER=str(data),
        API_ADDRESS="127.0.0.1",
        API_PORT=str(api_port),
        WEBSOCKET_ADDRESS="127.0.0.1",
        WEBSOCKET_PORT=str(hub_port),
        DOMAIN=f"http://127.0.0.1:{api_port}",
    )
    up = ManagedProcess("up", [sys.executable, "-m", "pgwarden.cli", "up"], log, env=env)
    for port in (api_port, hub_port):
        wait_until(lambda: answers(f"http://127.0.0.1:{port}/alive"), f"/alive on {port}", timeout=90, alive=up)
    return up


def terminate(up: ManagedProcess) -> int:
    """SIGTERM to the supervisor alone, as a service manager sends it; its exit code."""
    if up.process.poll() is None:
        os.kill(up.process.pid, signal.SIGTERM)
    try:
        return up.process.wait(60)
    finally:
        up.stop()


def postgres_running_in(data: Path) -> bool:
    found = subprocess.run(["pgrep", "-f", f"postgres.*-D {data / 'postgres'}"], capture_output=True)
    return found.returncode == 0


async def hub_handshake(api_port: int, hub_port: int, register: bool) -> str:
    async with BitwardenClient(f"http://127.0.0.1:{api_port}") as client:
        if register:
            await client.register(EMAIL, PASSWORD)
        await client.login(EMAIL, PASSWORD)
        url = f"ws://127.0.0.1:{hub_port}/notifications/hub?access_token={client.access_token}"
        async with websockets.connect(url) as ws:
            await ws.send('{"protocol":"json","version":1}\x1e')
            return await asyncio.wait_for(ws.recv(), 10)


async def test_up_serves_stops_cleanly_and_keeps_data(tmp_path: Path, data_dir: Path) -> None:
    data = data_dir
    log = tmp_path / "up.log"

    api_port, hub_port = free_port(), free_port()
    up = start_up(data, api_port, hub_port, log)
    assert await hub_handshake(api_port, hub_port, register=True) == "{}\x1e"
    assert terminate(up) == 0, up.tail()
    assert not answers(f"http://127.0.0.1:{api_port}/alive")
    assert not answers(f"http://127.0.0.1:{hub_port}/alive")
    assert not postgres_running_in(data), "the embedded database is stopped too"
    assert "stopped" in log.read_text()

    # A second start finds the same cluster: the account made above still logs in.
    api_port, hub_port = free_port(), free_port()
    up = start_up(data, api_port, hub_port, log)
    assert await hub_handshake(api_port, hub_port, register=False) == "{}\x1e"
    assert terminate(up) == 0, up.tail()
    assert not postgres_running_in(data)


def test_up_restarts_a_child_that_dies(tmp_path: Path, data_dir: Path) -> None:
    data = data_dir
    api_port, hub_port = free_port(), free_port()
    up = start_up(data, api_port, hub_port, tmp_path / "up.log")
    try:
        found = subprocess.run(["pgrep", "-P", str(up.process.pid), "-f", "pgwarden.cli hub"],
                               capture_output=True, text=True)
        hub_pid = int(found.stdout.split()[0])
        os.kill(hub_pid, signal.SIGKILL)
        wait_until(lambda: not answers(f"http://127.0.0.1:{hub_port}/alive"), "the hub to go", timeout=10)
        wait_until(lambda: answers(f"http://127.0.0.1:{hub_port}/alive"), "the hub to come back", timeout=30,
                   alive=up)
        assert "hub exited" in up.tail(200)
    finally:
        assert terminate(up) == 0, up.tail()


def test_up_refuses_an_api_port_in_use_with_a_clear_message(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {name: value for name, value in os.environ.items() if name != "DATABASE_URL"}
        env.update(DATA_FOLDER=str(tmp_path / "data"), API_ADDRESS="127.0.0.1", API_PORT=str(port))
        done = subprocess.run([sys.executable, "-m", "pgwarden.cli", "up"], env=env, capture_output=True,
                              text=True, timeout=60)
    assert done.returncode == 2
    assert f"127.0.0.1:{port} is already in use; set API_PORT" in done.stderr
    assert not (tmp_path / "data").exists(), "nothing was started"


def test_a_killed_supervisor_takes_its_children_along(database_url: str, tmp_path: Path) -> None:
    api_port, hub_port = free_port(), free_port()
    env = {"DATABASE_URL": database_url, "API_ADDRESS": "127.0.0.1", "API_PORT": str(api_port),
           "WEBSOCKET_ADDRESS": "127.0.0.1", "WEBSOCKET_PORT": str(hub_port)}
    up = ManagedProcess("up", [sys.executable, "-m", "pgwarden.cli", "up"], tmp_path / "up.log", env=env)
    try:
        for port in (api_port, hub_port):
            wait_until(lambda: answers(f"http://127.0.0.1:{port}/alive"), f"/alive on {port}", alive=up)
        os.kill(up.process.pid, signal.SIGKILL)
        for port in (api_port, hub_port):
            wait_until(lambda: not answers(f"http://127.0.0.1:{port}/alive"), f"port {port} to close", timeout=15)
    finally:
        up.stop()


def without_port_privilege(argv: list[str]) -> list[str]:
    """argv run without CAP_NET_BIND_SERVICE, as a normal user runs (CI runs as root)."""
    if os.geteuid() != 0:
        return argv
    return ["setpriv", "--bounding-set=-net_bind_service", "--inh-caps=-net_bind_service", *argv]


def test_up_as_a_normal_user_on_port_80(database_url: str, tmp_path: Path) -> None:
    """A normal user gets the API on 8080 with a word why, or a clear refusal when 80 was asked for."""
    hub_port = free_port()
    base = {"DATABASE_URL": database_url, "API_ADDRESS": "127.0.0.1", "WEBSOCKET_ADDRESS": "127.0.0.1",
            "WEBSOCKET_PORT": str(hub_port), "DATA_FOLDER": str(tmp_path / "data")}
    argv = without_port_privilege([sys.executable, "-m", "pgwarden.cli", "up"])

    asked = subprocess.run(argv, env={**os.environ, **base, "API_PORT": "80"}, capture_output=True, text=True,
                           timeout=60, cwd=tmp_path)
    assert asked.returncode == 2
    assert "API_PORT=80 needs root or CAP_NET_BIND_SERVICE; choose a port above 1023" in asked.stderr

    env = {name: value for name, value in os.environ.items() if name != "API_PORT"} | base
    up = ManagedProcess("up", argv, tmp_path / "up.log", env=env, cwd=tmp_path)
    try:
        wait_until(lambda: "Press Ctrl-C to stop." in up.tail(), "the startup notice", alive=up)
        shown = up.tail(200)
        assert "port 80 needs root or CAP_NET_BIND_SERVICE; serving the API on 8080 instead" in shown
        assert "REST API:           http://127.0.0.1:8080" in shown
    finally:
        assert terminate(up) == 0, up.tail()


def test_sigterm_during_startup_still_stops_the_embedded_database(tmp_path: Path, data_dir: Path) -> None:
    data = data_dir
    env = {name: value for name, value in os.environ.items() if name != "DATABASE_URL"}
    env.update(DATA_FOLDER=str(data), API_ADDRESS="127.0.0.1", API_PORT=str(free_port()),
               WEBSOCKET_ADDRESS="127.0.0.1", WEBSOCKET_PORT=str(free_port()))
    up = ManagedProcess("up", [sys.executable, "-m", "pgwarden.cli", "up"], tmp_path / "up.log", env=env)
    wait_until(lambda: "pgwarden.up: database:" in up.tail(), "the embedded database", timeout=90, alive=up)
    assert terminate(up) == 0, up.tail()
    assert not postgres_running_in(data)


def test_the_database_a_killed_up_left_running_stops_with_the_next_up(tmp_path: Path, data_dir: Path) -> None:
    api_port, hub_port = free_port(), free_port()
    up = start_up(data_dir, api_port, hub_port, tmp_path / "up.log")
    up.process.send_signal(signal.SIGKILL)  # power cut, OOM killer, kill -9
    up.process.wait(30)
    up.stop()
    wait_until(lambda: not answers(f"http://127.0.0.1:{api_port}/alive"), "the API to go with its supervisor")
    assert postgres_running_in(data_dir), "pg_ctl's server outlives a SIGKILL"

    again = start_up(data_dir, free_port(), free_port(), tmp_path / "again.log")
    assert "adopting the embedded PostgreSQL" in again.tail(200)
    assert terminate(again) == 0
    assert not postgres_running_in(data_dir), "no embedded database is left behind"
