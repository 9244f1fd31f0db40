"""`pgwarden caddy`: the system's Caddy in front of `pgwarden up` on this machine.

It runs `caddy run` with deploy/caddy/Caddyfile and sets that file's variables from pgwarden's
own settings, so the two agree: the site is DOMAIN's host and port, the upstreams are API_PORT
and WEBSOCKET_PORT on loopback. A local name (localhost, an IP address, *.local, *.internal,
*.test, a name without a dot) gets a certificate from Caddy's local CA, whose root certificate
each client must trust; a public name gets one from Let's Encrypt or ZeroSSL (Caddy's automatic
HTTPS). Any PGWARDEN_* variable already set wins.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import sys
from pathlib import Path
from urllib.parse import urlsplit

from core.config import Config

__all__ = ["caddy_command", "caddy_settings", "local_ca_root"]

CADDYFILE = Path(__file__).resolve().parents[1] / "deploy" / "caddy" / "Caddyfile"
LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".test", ".lan", ".home.arpa")


class CaddyError(RuntimeError):
    """What keeps Caddy from starting in front of pgwarden; one line for the operator."""


def is_local(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host == "localhost" or "." not in host or host.endswith(LOCAL_SUFFIXES)
    return address.is_private or address.is_loopback or address.is_link_local


def local_ca_root(environ: dict[str, str] | None = None) -> Path:
    """Where Caddy, run by this user, keeps the root certificate of its local CA."""
    environ = dict(os.environ) if environ is None else environ
    data = environ.get("XDG_DATA_HOME") or str(Path(environ.get("HOME") or Path.home()) / ".local" / "share")
    return Path(data) / "caddy" / "pki" / "authorities" / "local" / "root.crt"


def caddy_settings(config: Config, environ: dict[str, str]) -> dict[str, str]:
    """The Caddyfile's variables for this pgwarden's settings (those in `environ` are kept)."""
    parts = urlsplit(config.domain)
    if parts.scheme != "https":
        raise CaddyError(f"DOMAIN is {config.domain}: set it to the https:// URL clients will use,"
                         " e.g. DOMAIN=https://localhost:8443 (the same for `pgwarden up`)")
    host = parts.hostname or "localhost"
    https_port = parts.port or 443
    http_port = 80 if https_port == 443 else https_port + 1
    settings = {
        "PGWARDEN_DOMAIN": host,
        "PGWARDEN_HTTPS_PORT": str(https_port),
        "PGWARDEN_HTTP_PORT": str(http_port),
        "PGWARDEN_TLS": "internal" if is_local(host) else "automatic",
        "PGWARDEN_API": f"127.0.0.1:{config.api_port}",
        "PGWARDEN_HUB": f"127.0.0.1:{config.websocket_port}",
        "PGWARDEN_CADDY_ADMIN": "off",
    }
    settings.update({name: value for name, value in environ.items() if name in settings})
    taken = {config.api_port: "API_PORT"}
    if config.websocket_enabled:
        taken[config.websocket_port] = "WEBSOCKET_PORT"
    for name in ("PGWARDEN_HTTP_PORT", "PGWARDEN_HTTPS_PORT"):
        port = int(settings[name])
        if port in taken:
            raise CaddyError(f"Caddy's port {port} is pgwarden's {taken[port]}: start both commands with"
                             " API_ADDRESS=127.0.0.1 API_PORT=8080 (README, HTTPS on one machine)")
    return settings


def caddy_command(config: Config) -> int:
    caddy = shutil.which("caddy")
    if caddy is None:
        raise CaddyError("caddy is not installed (Debian: apt-get install caddy)")
    if not CADDYFILE.exists():
        raise CaddyError(f"no {CADDYFILE}: run `scripts/pgwarden caddy` from a checkout of pgwarden")
    settings = caddy_settings(config, dict(os.environ))
    lines = [f"Caddy serves {config.domain} ({settings['PGWARDEN_TLS']} certificate) in front of"
             f" {settings['PGWARDEN_API']} and {settings['PGWARDEN_HUB']}"]
    if settings["PGWARDEN_TLS"] == "internal":
        root = local_ca_root()
        lines += [f"Clients must trust Caddy's local root certificate, {root} (made at the first start):",
                  f"  bw CLI:       NODE_EXTRA_CA_CERTS={root} bw config server {config.domain}",
                  "  this machine: cp it to /usr/local/share/ca-certificates/pgwarden-caddy.crt"
                  " && update-ca-certificates",
                  "  desktop app, browsers, phones: import it as a trusted authority (README)"]
    print("\n".join(lines), file=sys.stderr, flush=True)
    os.execve(caddy, [caddy, "run", "--adapter", "caddyfile", "--config", str(CADDYFILE)],
              {**os.environ, **settings})
