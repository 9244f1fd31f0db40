"""pgwarden: a Bitwarden-compatible vault server for PostgreSQL, with live sync."""

__version__ = "0.1.0"
