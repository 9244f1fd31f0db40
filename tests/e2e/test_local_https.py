"""The README's "HTTPS on one machine": `pgwarden up` and `pgwarden caddy` side by side with one
environment, no port clash, Caddy's local CA at the path the command prints, and the official
`bw` CLI logging in with NODE_EXTRA_CA_CERTS pointing at it. Also: what the command sets for a
public DOMAIN (Caddy's automatic HTTPS) and the clash it refuses."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from core.config import Config
from pgwarden.caddy import CaddyError, caddy_settings, local_ca_root
from tests.support.bwcli import Bw
from tests.support.bwclient import BitwardenClient
from tests.support.processes import ManagedProcess, free_port, wait_until
from tests.support.tools import require_tool
from tests.pgwarden.test_up import answers

EMAIL = "local@example.com"
PASSWORD = "a local passphrase"


def serves_tls(port: int, root: Path) -> bool:
    if not root.exists():
        return False
    try:
        context = ssl.create_default_context(cafile=str(root))
        import socket

        with socket.create_connection(("127.0.0.1", port), timeout=1) as raw:
            with context.wrap_socket(raw, server_hostname="localhost"):
                return True
    except (OSError, ssl.SSLError):
        return False


@pytest.mark.external
async def test_local_https_with_caddys_local_ca_and_the_bw_cli(tmp_path: Path, data_dir: Path) -> None:
    require_tool("caddy")
    https_port, api_port, hub_port = free_port(), free_port(), free_port()
    home = tmp_path / "home"
    env = {name: value for name, value in os.environ.items() if name != "DATABASE_URL"}
    env.update(HOME=str(home), XDG_DATA_HOME=str(home / ".local" / "share"), DATA_FOLDER=str(data_dir),
               DOMAIN=f"https://localhost:{https_port}", API_ADDRESS="127.0.0.1", API_PORT=str(api_port),
               WEBSOCKET_ADDRESS="127.0.0.1", WEBSOCKET_PORT=str(hub_port))
    root = local_ca_root(env)
    assert root == home / ".local" / "share" / "caddy" / "pki" / "authorities" / "local" / "root.crt"
    command = [sys.executable, "-m", "pgwarden.cli"]
    up = ManagedProcess("up", [*command, "up"], tmp_path / "up.log", env=env)
    caddy = ManagedProcess("caddy", [*command, "caddy"], tmp_path / "caddy.log", env=env)
    try:
        wait_until(lambda: answers(f"http://127.0.0.1:{api_port}/alive"), "the API", timeout=90, alive=up)
        wait_until(lambda: serves_tls(https_port, root), "Caddy's HTTPS with its local CA", timeout=60, alive=caddy)
        assert f"NODE_EXTRA_CA_CERTS={root} bw config server https://localhost:{https_port}" in caddy.tail()

        created = subprocess.run([*command, "user", "create", "--email", EMAIL, "--password-stdin"], env=env,
                                 input=PASSWORD, capture_output=True, text=True, timeout=120)
        assert created.returncode == 0, created.stderr
        async with BitwardenClient(f"https://localhost:{https_port}",
                                   verify=ssl.create_default_context(cafile=str(root))) as client:
            await client.login(EMAIL, PASSWORD)

        bw = Bw(tmp_path / "bw", SimpleNamespace(ca_cert=root))
        await bw.login(f"https://localhost:{https_port}", EMAIL, PASSWORD)
        assert (await bw.json("status"))["status"] == "unlocked"
    finally:
        caddy.stop()
        up.stop()


def test_a_public_domain_gets_automatic_https_on_the_standard_ports() -> None:
    config = Config.from_env({"DOMAIN": "https://vault.example.com", "API_PORT": "8080"})
    settings = caddy_settings(config, {})
    assert settings["PGWARDEN_TLS"] == "automatic"
    assert (settings["PGWARDEN_DOMAIN"], settings["PGWARDEN_HTTPS_PORT"], settings["PGWARDEN_HTTP_PORT"]) == (
        "vault.example.com", "443", "80")
    assert settings["PGWARDEN_API"] == "127.0.0.1:8080"
    # an operator's own choice wins
    assert caddy_settings(config, {"PGWARDEN_TLS": "files"})["PGWARDEN_TLS"] == "files"


def test_caddy_refuses_the_port_of_the_api_and_a_plain_http_domain() -> None:
    with pytest.raises(CaddyError, match="API_PORT=8080"):
        caddy_settings(Config.from_env({"DOMAIN": "https://vault.example.com"}), {})  # API on 80
    with pytest.raises(CaddyError, match="https://"):
        caddy_settings(Config.from_env({"DOMAIN": "http://localhost"}), {})
