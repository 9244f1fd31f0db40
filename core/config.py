"""All settings, declared once: environment name, type, default and what it does.

Names follow the ones operators of Bitwarden-compatible servers already know. Everything is
read and validated at startup; a bad value stops the program with every problem listed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = ["Config", "ConfigError", "redact_dsn"]


class ConfigError(ValueError):
    """Raised when settings from the environment are invalid; lists every problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(problems)
        self.problems = problems

    def __str__(self) -> str:
        return "invalid configuration:\n  " + "\n  ".join(self.problems)


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


def _header_name(text: str) -> str | None:
    return None if text.strip().lower() == "none" else text.strip()


def _setting(env: str, default: Any, cast: Callable[[str], Any], doc: str) -> Any:
    return field(default=default, metadata={"env": env, "cast": cast, "doc": doc})


@dataclass(frozen=True)
class Config:
    database_url: str | None = _setting(
        "DATABASE_URL", None, str,
        "PostgreSQL URL. Unset: `pgwarden up` runs an embedded PostgreSQL in DATA_FOLDER.")
    data_folder: str = _setting(
        "DATA_FOLDER", "data", str, "Where the embedded PostgreSQL keeps its files.")
    domain: str = _setting(
        "DOMAIN", "http://localhost", str,
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
    max_items_per_user: int = _setting(
        "MAX_ITEMS_PER_USER", 50_000, _positive,
        "Items (ciphers) one user's vault may hold, deleted ones in the trash included.")
    hub_handshake_timeout: int = _setting(
        "HUB_HANDSHAKE_TIMEOUT", 15, _positive,
        "Seconds a hub connection has to send its SignalR handshake.")
    hub_max_connections_per_user: int = _setting(
        "HUB_MAX_CONNECTIONS_PER_USER", 64, _positive, "Hub connections one user may hold.")
    hub_max_connections_per_ip: int = _setting(
        "HUB_MAX_CONNECTIONS_PER_IP", 256, _positive, "Hub connections one client address may hold.")
    hub_max_message_size: int = _setting(
        "HUB_MAX_MESSAGE_SIZE", 65536, _positive, "Largest WebSocket message the hub accepts, in bytes.")
    hub_send_queue: int = _setting(
        "HUB_SEND_QUEUE", 256, _positive,
        "Messages queued for one slow hub connection before it is closed to resync.")
    ip_header: str | None = _setting(
        "IP_HEADER", "X-Real-IP", _header_name,
        "Header in which the reverse proxy passes the client's address (per-address limits, logs);"
        " none: use the connection's own address.")
    log_level: str = _setting("LOG_LEVEL", "info", str, "debug, info, warning or error.")

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
        if problems:
            raise ConfigError(problems)
        return cls(**values)

    @property
    def token_issuer(self) -> str:
        return f"{self.domain.rstrip('/')}|login"

    @staticmethod
    def reference() -> list[tuple[str, str, str]]:
        """(variable, default, description) for every setting, for docs and --help."""
        return [
            (f.metadata["env"], "" if f.default is None else str(f.default).lower()
             if isinstance(f.default, bool) else str(f.default), f.metadata["doc"])
            for f in fields(Config)
        ]


def redact_dsn(dsn: str) -> str:
    """A database URL fit for logs: the password replaced by ***."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
