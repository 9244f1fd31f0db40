"""docker-compose.yml: valid for docker-compose, and its parts work when run as plain processes.

No Docker engine runs here, so the services are exercised as what they are: the migrate job,
two API replicas and a hub started with the environment compose gives them, and Caddy with the
compose Caddyfile routing to them over TLS from its own local CA.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import websockets
import yaml

from tests.conftest import ROOT
from tests.support.bwclient import BitwardenClient
from tests.support.processes import ManagedProcess, free_port, wait_until
from tests.support.stack import Replica, start_replica
from tests.support.tools import require_tool

EMAIL = "compose@example.com"
PASSWORD = "correct horse battery staple"


#: what an operator puts in .env: passwords with the characters a URL would have to escape
SECRETS = {"POSTGRES_PASSWORD": "p@ss:w/rd#1?%", "HUB_DATABASE_PASSWORD": "hub p@ss/word"}


def compose_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("docker-compose"), "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True, text=True, cwd=ROOT, env={"PATH": "/usr/bin:/bin", **env},
    )


@pytest.fixture(scope="module")
def compose() -> dict:
    """The compose file as docker-compose itself resolves it."""
    done = compose_config({"DOMAIN": "https://localhost", **SECRETS})
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


@pytest.mark.parametrize("secret", sorted(SECRETS))
def test_compose_stops_at_once_without_a_required_secret(secret: str) -> None:
    env = {"DOMAIN": "https://vault.example.com", **SECRETS}
    del env[secret]
    done = compose_config(env)
    assert done.returncode != 0
    assert f"set {secret} in .env" in done.stderr


def test_compose_for_a_public_host(compose: dict) -> None:
    services = compose["services"]
    for name in ("migrate", "hub-role", "api-1", "api-2", "hub"):
        environment = services[name]["environment"]
        # passwords travel in PGPASSWORD, as typed, never inside a URL that would need escaping
        assert "@postgres:5432/" in environment["DATABASE_URL"]
        assert ":" not in environment["DATABASE_URL"].split("//", 1)[1].split("@", 1)[0], name
    assert services["migrate"]["environment"]["PGPASSWORD"] == SECRETS["POSTGRES_PASSWORD"]
    assert services["hub"]["environment"]["PGPASSWORD"] == SECRETS["HUB_DATABASE_PASSWORD"]
    assert services["api-1"]["environment"]["SIGNUPS_ALLOWED"] == "false"
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for name in ("migrate", "hub-role", "api-1", "api-2", "hub"):
        assert services[name]["image"] == f"pgwarden:{version}", name
    ports = {(port["target"], port.get("protocol", "tcp")) if isinstance(port, dict) else port
             for port in services["caddy"]["ports"]}
    assert ports & {(443, "udp"), "443:443/udp"}, "HTTP/3"


def test_compose_has_the_documented_shape(compose: dict) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", "migrate", "hub-role", "api-1", "api-2", "hub", "caddy"}
    assert services["migrate"]["command"] == ["pgwarden", "migrate"]
    assert services["migrate"]["restart"] == "no"
    # the hub logs in as its own role, given only what it reads (docs/security.md)
    assert services["hub-role"]["command"][:4] == ["pgwarden", "db", "grant-hub", "pgwarden_hub"]
    assert services["hub"]["environment"]["DATABASE_URL"].startswith("postgresql://pgwarden_hub@")
    assert services["hub"]["depends_on"]["hub-role"]["condition"] == "service_completed_successfully"
    assert "SIGNING_KEY_PASSPHRASE" not in services["hub"]["environment"]
    for name in ("api-1", "api-2"):
        assert services[name]["command"] == ["pgwarden", "api"]
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["hub"]["command"] == ["pgwarden", "hub"]
    for name in ("postgres", "api-1", "api-2", "hub"):
        assert "healthcheck" in services[name], name
        assert services[name]["restart"] == "unless-stopped", name
    assert "pgdata:/var/lib/postgresql/data:rw" in services["postgres"]["volumes"]
    assert "pgdata" in compose["volumes"]


def _service_env(compose: dict, name: str, database_url: str) -> dict[str, str]:
    env = {key: str(value) for key, value in compose["services"][name]["environment"].items()}
    env["DATABASE_URL"] = database_url  # the test database stands in for the postgres service
    return env


async def test_compose_parts_as_processes_serve_a_client(
    compose: dict, database_url: str, logs: Path, tmp_path: Path
) -> None:
    https_port = free_port()
    domain = f"https://localhost:{https_port}"

    migrate = subprocess.run(
        [sys.executable, "-m", "pgwarden.cli", *compose["services"]["migrate"]["command"][1:]],
        env={**_service_env(compose, "migrate", database_url), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=120,
    )
    assert migrate.returncode == 0, migrate.stderr

    apis: list[Replica] = []
    parts: list[ManagedProcess] = []
    try:
        for index, name in enumerate(("api-1", "api-2"), start=1):
            env = _service_env(compose, name, database_url) | {"DOMAIN": domain}
            apis.append(start_replica("api", database_url, domain, logs, index, extra_env=env))
            parts.append(apis[-1].process)
        hub_env = _service_env(compose, "hub", database_url) | {"DOMAIN": domain}
        hub = start_replica("hub", database_url, domain, logs, 1, extra_env=hub_env)
        parts.append(hub.process)

        caddy = ManagedProcess(
            "caddy",
            [require_tool("caddy"), "run", "--config", str(ROOT / "deploy/compose/Caddyfile"), "--adapter",
             "caddyfile"],
            logs / "compose-caddy.log",
            env={
                "DOMAIN": domain,
                "PGWARDEN_HTTPS_PORT": str(https_port),
                "PGWARDEN_HTTP_PORT": str(free_port()),
                "PGWARDEN_CADDY_ADMIN": "off",
                "PGWARDEN_API": " ".join(api.address for api in apis),
                "PGWARDEN_HUB": hub.address,
                "XDG_DATA_HOME": str(tmp_path / "caddy-data"),
                "XDG_CONFIG_HOME": str(tmp_path / "caddy-config"),
            },
        )
        parts.append(caddy)
        root_ca = tmp_path / "caddy-data" / "caddy" / "pki" / "authorities" / "local" / "root.crt"
        trust = await asyncio.to_thread(_caddy_trust, root_ca, https_port, caddy)

        async with BitwardenClient(domain, verify=trust) as client:
            # sign-ups are closed: the first account comes from the documented command
            refused = await client.http.post("/identity/accounts/register", json={"email": EMAIL})
            assert refused.status_code in (400, 403), refused.text
            first_user = compose_first_user_command()
            created = subprocess.run(
                [sys.executable, "-m", "pgwarden.cli", *first_user[1:], "--password-stdin"],
                env={**_service_env(compose, "api-1", database_url), "PATH": "/usr/bin:/bin"},
                input=PASSWORD, capture_output=True, text=True, timeout=120)
            assert created.returncode == 0, created.stderr
            await client.login(EMAIL, PASSWORD)
            negotiate = await client.post("/notifications/hub/negotiate")
            assert negotiate.status_code == 200 and negotiate.json()["connectionId"]

            hub_url = f"wss://localhost:{https_port}/notifications/hub?access_token={client.access_token}"
            async with websockets.connect(hub_url, ssl=trust) as ws:
                await ws.send('{"protocol":"json","version":1}\x1e')
                assert await asyncio.wait_for(ws.recv(), 10) == "{}\x1e"

                created = await client.post("/api/folders", {"name": client.encrypt("Work")})
                assert created.status_code == 200
                message = await _next_invocation(ws)
                assert message["target"] == "ReceiveMessage"
                [argument] = message["arguments"]
                assert argument["Type"] == 7 and argument["ContextId"] == client.device
                assert argument["Payload"]["Id"] == created.json()["id"]

            # One replica gone: the other serves the same token, so clients do not notice.
            apis[0].process.stop()
            for _ in range(4):
                assert (await client.get("/api/sync")).status_code == 200
    finally:
        for part in reversed(parts):
            part.stop()


def compose_first_user_command() -> list[str]:
    """`pgwarden user create --email ...` as docker-compose.yml's header tells the operator to run it."""
    text = (ROOT / "docker-compose.yml").read_text()
    line = next(line for line in text.splitlines() if "docker-compose exec api-1 pgwarden user create" in line)
    words = line.lstrip("# ").split()
    command = words[words.index("pgwarden"):]
    command[command.index("--email") + 1] = EMAIL
    return command


def _caddy_trust(root_ca: Path, port: int, caddy: ManagedProcess) -> ssl.SSLContext:
    """A client TLS context trusting Caddy's local CA, once Caddy serves with it."""
    def serving() -> bool:
        if not root_ca.exists():
            return False
        context = ssl.create_default_context(cafile=str(root_ca))
        try:
            import socket

            with socket.create_connection(("127.0.0.1", port), timeout=1) as raw:
                with context.wrap_socket(raw, server_hostname="localhost"):
                    return True
        except (OSError, ssl.SSLError):
            return False

    wait_until(serving, "Caddy to serve TLS from its local CA", timeout=30, alive=caddy)
    return ssl.create_default_context(cafile=str(root_ca))


async def _next_invocation(ws: websockets.ClientConnection) -> dict:
    """The next JSON-protocol invocation, skipping pings."""
    while True:
        frame = await asyncio.wait_for(ws.recv(), 10)
        for record in filter(None, frame.split("\x1e")):
            message = json.loads(record)
            if message.get("type") == 1:
                return message
