"""The wire shapes of stored files: an item's attachment, a Send's file, and their sizes as the
clients show them."""

from __future__ import annotations

from typing import Any

import asyncpg

__all__ = ["attachment_json", "size_name"]


def size_name(size: int) -> str:
    """A size as the clients show it (1.5 MB)."""
    value, unit = float(size), "Bytes"
    for unit in ("Bytes", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            break
        value /= 1024
    return f"{value:.0f} {unit}" if unit == "Bytes" else f"{value:.1f} {unit}".replace(".0 ", " ")


def attachment_json(attachment: dict[str, Any] | asyncpg.Record, url: str | None = None) -> dict[str, Any]:
    """AttachmentResponseModel. The URL is given only by the attachment's own GET: a signed URL
    is short-lived, and a sync would sign one for every file."""
    size = attachment["size"]
    return {"id": attachment["id"], "url": url, "fileName": attachment["file_name"], "key": attachment["key"],
            "size": str(size), "sizeName": size_name(size), "object": "attachment"}
