"""The Bitwarden error body, which both apps answer with."""

from __future__ import annotations

from typing import Any

__all__ = ["error_json"]


def error_json(message: str, field: str | None = None) -> dict[str, Any]:
    """``{"message", "validationErrors", "object": "error"}``: what the clients show a user."""
    return {
        "message": message,
        "validationErrors": {field: [message]} if field else None,
        "object": "error",
    }
