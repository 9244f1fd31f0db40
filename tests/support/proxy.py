"""Run the deploy/ proxy examples for real: Caddy, nginx and HAProxy from the Debian packages.

The files under deploy/ stay the source of truth: each takes its settings from PGWARDEN_*
environment variables (Caddy and HAProxy natively, nginx as an envsubst template), and the tests
only supply those values and the process plumbing (private pid, log and state paths).
"""

from __future__ import annotations

import re
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import ManagedProcess, wait_until
from tests.support.tls import TlsFiles
from tests.support.tools import require_tool

__all__ = ["DEPLOY", "PROXIES", "ProxySettings", "render_nginx", "start_proxy"]

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PROXIES = ("caddy", "nginx", "haproxy")


@dataclass(frozen=True)
class ProxySettings:
    domain: str
    http_port: int
    https_port: int
    certs: TlsFiles
    api: tuple[str, ...]  # host:port of each API replica
    hub: tuple[str, ...]  # host:port of each hub replica

    @property
    def url(self) -> str:
        return f"https://{self.domain}:{self.https_port}"

    def environment(self, kind: str) -> dict[str, str]:
        """The PGWARDEN_* variables the deploy file of proxy `kind` reads."""
        if kind != "caddy" and (len(self.api) != 1 or len(self.hub) != 1):
            raise ValueError(f"the {kind} example takes one API and one hub address")
        return {
            "PGWARDEN_DOMAIN": self.domain,
            "PGWARDEN_HTTP_PORT": str(self.http_port),
            "PGWARDEN_HTTPS_PORT": str(self.https_port),
            # HAProxy reads certificate and key from one file.
            "PGWARDEN_TLS_CERT": str(self.certs.combined if kind == "haproxy" else self.certs.cert),
            "PGWARDEN_TLS_KEY": str(self.certs.key),
            "PGWARDEN_API": " ".join(self.api),
            "PGWARDEN_HUB": " ".join(self.hub),
            "PGWARDEN_CADDY_ADMIN": "off",
        }


def render_nginx(template: str, values: dict[str, str]) -> str:
    """envsubst limited to the PGWARDEN_* names, as the nginx image's template step does."""
    return re.sub(r"\$\{(PGWARDEN_[A-Z_]+)\}", lambda match: values[match.group(1)], template)


def _nginx_main(workdir: Path, site: Path) -> str:
    # What a distribution's nginx.conf provides, with every path private to this run.
    temp = workdir / "temp"
    temp.mkdir(exist_ok=True)
    return f"""daemon off;
worker_processes 1;
pid {workdir}/nginx.pid;
error_log stderr notice;
events {{ worker_connections 512; }}
http {{
    access_log {workdir}/access.log;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {site};
}}
"""


def _command(kind: str, settings: ProxySettings, workdir: Path) -> tuple[list[str], dict[str, str]]:
    env = settings.environment(kind)
    if kind == "caddy":
        # Caddy keeps certificates and its autosave under XDG paths: keep them in workdir.
        env |= {"XDG_DATA_HOME": str(workdir / "data"), "XDG_CONFIG_HOME": str(workdir / "config")}
        return [require_tool("caddy"), "run", "--config", str(DEPLOY / "caddy" / "Caddyfile"),
                "--adapter", "caddyfile"], env
    if kind == "nginx":
        site = workdir / "pgwarden.conf"
        site.write_text(render_nginx((DEPLOY / "nginx" / "pgwarden.conf.template").read_text(), env))
        main = workdir / "nginx.conf"
        main.write_text(_nginx_main(workdir, site))
        return [require_tool("nginx"), "-p", str(workdir), "-c", str(main), "-e", "stderr"], env
    if kind == "haproxy":
        return [require_tool("haproxy"), "-db", "-f", str(DEPLOY / "haproxy" / "haproxy.cfg")], env
    raise ValueError(f"unknown proxy {kind!r}")


def _serves_tls(settings: ProxySettings) -> bool:
    context = settings.certs.client_context()
    try:
        with socket.create_connection(("127.0.0.1", settings.https_port), timeout=1) as raw:
            with context.wrap_socket(raw, server_hostname=settings.domain):
                return True
    except (OSError, ssl.SSLError):
        return False


def start_proxy(kind: str, settings: ProxySettings, workdir: Path) -> ManagedProcess:
    """Proxy `kind` running its deploy/ example, once it completes a TLS handshake."""
    workdir.mkdir(parents=True, exist_ok=True)
    argv, env = _command(kind, settings, workdir)
    proxy = ManagedProcess(kind, argv, workdir / f"{kind}.log", env=env, cwd=workdir)
    try:
        wait_until(lambda: _serves_tls(settings), f"{kind} to serve TLS on {settings.https_port}",
                   alive=proxy)
    except BaseException:
        proxy.stop()
        raise
    return proxy
