"""All settings, declared once: environment name, type, default and what it does.

Names follow the ones operators of Bitwarden-compatible servers already know. Everything is
read and validated at startup; a bad value stops the program with every problem listed.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = ["Config", "ConfigError", "Secret", "redact_dsn", "web_origin"]


class ConfigError(ValueError):
    """Raised when settings from the environment are invalid; lists every problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(problems)
        self.problems = problems

    def __str__(self) -> str:
        return "invalid configuration:\n  " + "\n  ".join(self.problems)


class Secret:
    """A setting kept out of reprs and logs; ``reveal()`` hands it to the one place that uses it."""

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__


def _readable_file(text: str) -> str:
    try:
        with open(text, encoding="utf-8") as file:
            if not file.read().strip("\r\n"):
                raise ValueError(f"{text} is empty")
    except OSError as error:
        raise ValueError(f"cannot read {text}: {error.strerror}") from None
    return text


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _port(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise ValueError(f"{port} is not a TCP port")
    return port


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError(f"{value} is not positive")
    return value


def _at_least(minimum: int) -> Callable[[str], int]:
    def cast(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise ValueError(f"{value} is less than {minimum}")
        return value

    return cast


def _file_storage(text: str) -> str:
    if text not in ("postgresql", "s3"):
        raise ValueError("must be postgresql or s3")
    return text


def _header_name(text: str) -> str | None:
    return None if text.strip().lower() == "none" else text.strip()


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(text: str) -> tuple[Network, ...]:
    if text.strip().lower() == "none":
        return ()
    # an address alone is a network of one; host bits set in a CIDR are a typo, not a wish
    return tuple(ipaddress.ip_network(item) for item in text.replace(",", " ").split())


_DEFAULT_PORTS = {"http": 80, "https": 443}


def web_origin(url: str) -> str:
    """The origin of a URL as a browser sends it in ``Origin``: scheme and host lowercased, no
    default port, no path."""
    parts = urlsplit(url.strip())
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"{url!r} is not an http(s) URL")
    port = parts.port  # raises ValueError for a bad port
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}" + ("" if port in (None, _DEFAULT_PORTS[parts.scheme]) else f":{port}")


def _origins(text: str) -> tuple[str, ...]:
    origins = []
    for item in text.replace(",", " ").split():
        parts = urlsplit(item)
        # an origin names a site, never a page: a path, query or credentials means a mistake
        if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
            raise ValueError(f"{item!r} is not an origin (scheme://host[:port])")
        origins.append(web_origin(item))
    return tuple(origins)


def _url(text: str) -> str:
    web_origin(text)
    return text.strip()


LOG_LEVELS = ("debug", "info", "warning", "error")


def _log_level(text: str) -> str:
    level = text.strip().lower()
    if level not in LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}, got {text!r}")
    return level


def _token(text: str) -> str:
    token = text.strip()
    if len(token) < 16 or any(c.isspace() for c in token):
        raise ValueError("expected at least 16 characters without spaces (e.g. `openssl rand -hex 32`)")
    return token


SMTP_SECURITY = ("starttls", "force_tls", "off")


def _smtp_security(text: str) -> str:
    value = text.strip().lower()
    if value not in SMTP_SECURITY:
        raise ValueError(f"expected one of {', '.join(SMTP_SECURITY)}")
    return value


def _address(text: str) -> str:
    address = text.strip()
    local, at, host = address.rpartition("@")
    if not at or not local or "." not in host or any(c.isspace() or c in "<>," for c in address):
        raise ValueError(f"{address!r} is not a mail address")
    return address


def _setting(env: str, default: Any, cast: Callable[[str], Any], doc: str, *, secret: bool = False) -> Any:
    # a secret stays out of the repr, so a logged or printed Config does not carry it
    return field(default=default, repr=not secret, metadata={"env": env, "cast": cast, "doc": doc})


@dataclass(frozen=True)
class Config:
    database_url: str | None = _setting(
        "DATABASE_URL", None, str,
        "PostgreSQL URL; several hosts (`h1,h2` with `?target_session_attrs=read-write`) follow a failover."
        " Unset: `pgwarden up` runs an embedded PostgreSQL in DATA_FOLDER.")
    data_folder: str | None = _setting(
        "DATA_FOLDER", None, str,
        "Where the embedded PostgreSQL keeps its files. Unset: ~/.local/share/pgwarden ($XDG_DATA_HOME/pgwarden),"
        " /var/lib/pgwarden for root; a relative path is taken from the current directory.")
    domain: str = _setting(
        "DOMAIN", "http://localhost", _url,
        "The public URL clients use (scheme and host, optional path); names the token issuer.")
    api_address: str = _setting("API_ADDRESS", "0.0.0.0", str, "Address the REST API listens on.")
    api_port: int = _setting("API_PORT", 80, _port, "Port the REST API listens on.")
    websocket_enabled: bool = _setting(
        "WEBSOCKET_ENABLED", True, _bool,
        "Live sync. false switches the hub and negotiation off; clients then sync on their own.")
    websocket_address: str = _setting(
        "WEBSOCKET_ADDRESS", "0.0.0.0", str, "Address the notifications hub listens on.")
    websocket_port: int = _setting("WEBSOCKET_PORT", 3012, _port, "Port of the notifications hub.")
    signups_allowed: bool = _setting(
        "SIGNUPS_ALLOWED", True, _bool, "Whether anyone may register an account.")
    access_token_lifetime: int = _setting(
        "ACCESS_TOKEN_LIFETIME", 7200, _positive, "Seconds an access token is valid.")
    refresh_token_lifetime: int = _setting(
        "REFRESH_TOKEN_LIFETIME", 2592000, _positive,
        "Seconds a refresh token stays valid unused; each use starts the time again (30 days).")
    login_ratelimit_seconds: int = _setting(
        "LOGIN_RATELIMIT_SECONDS", 60, _positive,
        "Seconds, on average, between master password attempts from one address or for one account,"
        " once the burst is spent.")
    login_ratelimit_max_burst: int = _setting(
        "LOGIN_RATELIMIT_MAX_BURST", 10, _positive,
        "Master password attempts one address or account may make in a burst, before it must wait.")
    import_ratelimit_seconds: int = _setting(
        "IMPORT_RATELIMIT_SECONDS", 60, _positive,
        "Seconds, on average, between imports (personal or into an organization) by one user, once the"
        " burst is spent.")
    import_ratelimit_max_burst: int = _setting(
        "IMPORT_RATELIMIT_MAX_BURST", 3, _positive,
        "Imports one user may make in a burst, before they are paced by IMPORT_RATELIMIT_SECONDS.")
    max_items_per_user: int = _setting(
        "MAX_ITEMS_PER_USER", 50_000, _positive,
        "Items (ciphers) one user's vault may hold, deleted ones in the trash included; an organization"
        " may hold as many of its own, counted apart.")
    file_storage: str = _setting(
        "FILE_STORAGE", "postgresql", _file_storage,
        "Where attachments and file Sends live: postgresql (in the database, so that a database backup"
        " holds them) or s3 (the S3_* settings).")
    s3_bucket: str | None = _setting("S3_BUCKET", None, str, "Bucket of FILE_STORAGE=s3.")
    s3_endpoint_url: str | None = _setting(
        "S3_ENDPOINT_URL", None, _url, "Endpoint of an S3-compatible store; unset: Amazon S3.")
    s3_region: str = _setting("S3_REGION", "us-east-1", str, "Region of the bucket.")
    s3_access_key_id: str | None = _setting(
        "S3_ACCESS_KEY_ID", None, str, "Access key of the bucket; unset: the usual AWS credential chain.")
    s3_secret_access_key: Secret | None = _setting(
        "S3_SECRET_ACCESS_KEY", None, Secret, "Secret of S3_ACCESS_KEY_ID.")
    max_file_size: int = _setting(
        "MAX_FILE_SIZE", 100 * 1024, _positive,
        "Largest attachment or Send file, in KiB, as encrypted by the client (100 MiB); the reverse"
        " proxy's body limit must be a little larger.")
    user_attachment_limit: int | None = _setting(
        "USER_ATTACHMENT_LIMIT", None, _at_least(0),
        "KiB of attachments one user's own items may hold in all; unset: no limit but MAX_FILE_SIZE.")
    org_attachment_limit: int | None = _setting(
        "ORG_ATTACHMENT_LIMIT", None, _at_least(0),
        "KiB of attachments one organization's items may hold in all; unset: no limit but MAX_FILE_SIZE.")
    user_send_limit: int | None = _setting(
        "USER_SEND_LIMIT", None, _at_least(0),
        "KiB of file Sends one user may hold in all; unset: no limit but MAX_FILE_SIZE.")
    request_header_timeout: int = _setting(
        "REQUEST_HEADER_TIMEOUT", 10, _positive,
        "Seconds a new API or hub connection may wait before its first byte, and between bytes of a"
        " request's headers, before it is closed.")
    hub_workers: int | None = _setting(
        "HUB_WORKERS", None, _positive,
        "Hub worker processes sharing its port, each with its own LISTEN connection; unset: one per CPU"
        " core.")
    hub_handshake_timeout: int = _setting(
        "HUB_HANDSHAKE_TIMEOUT", 5, _positive,
        "Seconds a hub connection has to send its SignalR handshake.")
    hub_max_connections: int = _setting(
        "HUB_MAX_CONNECTIONS", 10000, _positive,
        "Hub connections one hub worker process holds in all, counted from the upgrade request.")
    hub_max_anonymous_connections: int = _setting(
        "HUB_MAX_ANONYMOUS_CONNECTIONS", 1000, _positive,
        "Of those, connections to the anonymous hub (devices waiting for a login approval).")
    hub_max_connections_per_user: int = _setting(
        "HUB_MAX_CONNECTIONS_PER_USER", 64, _positive, "Hub connections one user may hold.")
    hub_max_connections_per_ip: int = _setting(
        "HUB_MAX_CONNECTIONS_PER_IP", 256, _positive, "Hub connections one client address may hold.")
    hub_ratelimit_max_burst: int = _setting(
        "HUB_RATELIMIT_MAX_BURST", 64, _positive,
        "New hub connections one client address may open at once, before HUB_RATELIMIT_PER_MINUTE paces it.")
    hub_ratelimit_per_minute: int = _setting(
        "HUB_RATELIMIT_PER_MINUTE", 120, _positive,
        "New hub connections one client address may open per minute once its burst is spent.")
    hub_max_message_size: int = _setting(
        "HUB_MAX_MESSAGE_SIZE", 65536, _positive,
        "Largest WebSocket message the hub accepts from a signed-in client, in bytes.")
    hub_send_buffer: int = _setting(
        "HUB_SEND_BUFFER", 65536, _at_least(4096),
        "Bytes held back for one hub connection once its socket's write buffer is full (64 KiB), before it"
        " is closed to reconnect and sync (4096 or more).")
    metrics_token: str | None = _setting(
        "METRICS_TOKEN", None, _token,
        "Bearer token that /metrics on the hub requires (16 characters or more); unset: /metrics answers 404.",
        secret=True)
    cors_allowed_origins: tuple[str, ...] = _setting(
        "CORS_ALLOWED_ORIGINS", (), _origins,
        "Browser origins allowed besides DOMAIN's and the official apps' (comma-separated"
        " scheme://host[:port]), e.g. a web vault hosted elsewhere.")
    ip_header: str | None = _setting(
        "IP_HEADER", "X-Real-IP", _header_name,
        "Header in which the reverse proxy passes the client's address (per-address limits, logs);"
        " none: use the connection's own address.")
    signing_key_passphrase: Secret | None = _setting(
        "SIGNING_KEY_PASSPHRASE", None, Secret,
        "Encrypts the token signing key stored in the database; the API needs it, the hub does not.")
    signing_key_passphrase_file: str | None = _setting(
        "SIGNING_KEY_PASSPHRASE_FILE", None, _readable_file,
        "A file holding SIGNING_KEY_PASSPHRASE (a Docker or systemd secret), read at startup.")
    trusted_proxies: tuple[Network, ...] = _setting(
        "TRUSTED_PROXIES", (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1")), _networks,
        "Addresses and CIDR ranges of the reverse proxies whose IP_HEADER is believed (comma-separated);"
        " none: believe no one.")
    log_level: str = _setting("LOG_LEVEL", "info", _log_level, "debug, info, warning or error.")
    smtp_host: str | None = _setting(
        "SMTP_HOST", None, str,
        "SMTP server for outgoing mail (two-step codes, invitations, email change, password hints);"
        " unset: pgwarden sends no mail and the flows that need it work without it or are off.")
    smtp_port: int | None = _setting(
        "SMTP_PORT", None, _port, "Its port; unset: 587 for starttls, 465 for force_tls, 25 for off.")
    smtp_security: str = _setting(
        "SMTP_SECURITY", "starttls", _smtp_security,
        "starttls (upgrade a plain connection, refuse a server that cannot), force_tls (TLS from the"
        " first byte) or off (plain text: a server on the same host only).")
    smtp_username: str | None = _setting("SMTP_USERNAME", None, str, "Login at the SMTP server, if it wants one.")
    smtp_password: Secret | None = _setting(
        "SMTP_PASSWORD", None, Secret, "Password at the SMTP server.", secret=True)
    smtp_from: str | None = _setting(
        "SMTP_FROM", None, _address, "The sender address of every mail; required with SMTP_HOST.")
    smtp_timeout: int = _setting(
        "SMTP_TIMEOUT", 15, _positive, "Seconds one SMTP connection may take before the mail is retried later.")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        problems: list[str] = []
        for f in fields(cls):
            raw = environ.get(f.metadata["env"])
            if raw is None or raw == "":
                continue
            try:
                values[f.name] = f.metadata["cast"](raw)
            except ValueError as error:
                problems.append(f"{f.metadata['env']}: {error}")
        if environ.get("SIGNING_KEY_PASSPHRASE") and environ.get("SIGNING_KEY_PASSPHRASE_FILE"):
            problems.append("SIGNING_KEY_PASSPHRASE and SIGNING_KEY_PASSPHRASE_FILE: set one, not both")
        if environ.get("SMTP_HOST") and not environ.get("SMTP_FROM"):
            problems.append("SMTP_FROM: required when SMTP_HOST is set")
        if bool(environ.get("SMTP_USERNAME")) != bool(environ.get("SMTP_PASSWORD")):
            problems.append("SMTP_USERNAME and SMTP_PASSWORD: set both or neither")
        if values.get("file_storage") == "s3" and not values.get("s3_bucket"):
            problems.append("FILE_STORAGE=s3: set S3_BUCKET")
        if problems:
            raise ConfigError(problems)
        return cls(**values)

    def signing_key_secret(self) -> str | None:
        """The signing key's passphrase: SIGNING_KEY_PASSPHRASE, or what its file holds (the
        final line break dropped)."""
        if self.signing_key_passphrase is not None:
            return self.signing_key_passphrase.reveal()
        if self.signing_key_passphrase_file is not None:
            with open(self.signing_key_passphrase_file, encoding="utf-8") as file:
                return file.read().rstrip("\r\n")
        return None

    @property
    def mail_enabled(self) -> bool:
        return self.smtp_host is not None

    @property
    def smtp_port_or_default(self) -> int:
        if self.smtp_port is not None:
            return self.smtp_port
        return {"starttls": 587, "force_tls": 465, "off": 25}[self.smtp_security]

    @property
    def hub_worker_count(self) -> int:
        """HUB_WORKERS, or the CPU cores this process may run on."""
        return self.hub_workers or len(os.sched_getaffinity(0)) or 1

    @property
    def token_issuer(self) -> str:
        return f"{self.domain.rstrip('/')}|login"

    @property
    def domain_origin(self) -> str:
        """What a web vault served at DOMAIN sends as its Origin."""
        return web_origin(self.domain)

    @staticmethod
    def reference() -> list[tuple[str, str, str]]:
        """(variable, default, description) for every setting, for docs and --help."""
        return [(f.metadata["env"], _shown(f.default), f.metadata["doc"]) for f in fields(Config)]


def _shown(default: object) -> str:
    """A default as an operator would write it in the environment."""
    if default is None or default == ():
        return ""
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, tuple):
        return ", ".join(str(item) for item in default)
    return str(default)


def redact_dsn(dsn: str) -> str:
    """A database URL fit for logs: the password replaced by ***."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
