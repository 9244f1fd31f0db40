"""An item's attachments: the files the clients encrypt and the API only stores.

An attachment is a row (its encrypted name, its own key encrypted by the client, its size) and a
file in the store under `file_key`. The v2 flow announces the file first (a row not yet
uploaded, its size as announced), then the file comes; the legacy flow sends both at once. Size
limits are checked before anything is stored: MAX_FILE_SIZE per file, and the KiB of all the
attachments of a user's own items (USER_ATTACHMENT_LIMIT), or of an organization's items
(ORG_ATTACHMENT_LIMIT), announced ones included, the owner's row locked so two uploads cannot
both take the last room.

Adding or removing an attachment moves the item's revision date (`touch`), so the ciphers
trigger publishes SyncCipherUpdate as for any edit. A deleted row releases its file
(db/sql/files.sql) and vaultapi/housekeeping.py removes it.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from core.config import Config
from vaultapi.body import Body
from vaultapi.errors import ApiError, NotFound
from vaultapi.models import ciphers, memberships
from vaultapi.models.ciphers import Visible
from vaultapi.models.file_shapes import attachment_json, size_name

__all__ = ["AttachmentInput", "announce", "add_uploaded", "attachment_json", "check_room", "editable", "file_key", "find",
           "mark_uploaded", "new_id", "remove", "room"]

#: the encrypted file name and the attachment's key: EncStrings of the sizes the clients send, with room
NAME_LENGTH = 1_000
KEY_LENGTH = 1_000


def new_id() -> str:
    """An attachment's or a Send file's id: 32 random lowercase hex digits."""
    return secrets.token_hex(16)


def file_key(cipher_id: uuid.UUID, attachment_id: str) -> str:
    return f"attachments/{cipher_id}/{attachment_id}"


@dataclass(frozen=True)
class AttachmentInput:
    """What a client announces before the v2 upload (AttachmentRequestModel)."""

    key: str
    file_name: str
    file_size: int
    last_known_revision_date: datetime | None

    @classmethod
    def parse(cls, body: Body) -> AttachmentInput:
        size = body.int("fileSize", required=True)
        if size is None or size < 0:
            raise ApiError("fileSize must be 0 or more.", field="fileSize")
        return cls(
            key=body.enc_string("key", required=True, max_length=KEY_LENGTH),
            file_name=body.enc_string("fileName", required=True, max_length=NAME_LENGTH),
            file_size=size,
            last_known_revision_date=ciphers.parse_date(body.get("lastKnownRevisionDate"), "lastKnownRevisionDate"),
        )


async def editable(conn: asyncpg.Connection | asyncpg.Pool, cipher_id: uuid.UUID, user_id: uuid.UUID, *,
                   lock: bool = False) -> Visible:
    """The item, which the caller may edit: only an editor adds or removes its files."""
    item = await ciphers.require(conn, cipher_id, user_id, lock=lock)
    if item.read_only:
        raise ApiError("You do not have permissions to edit this.")
    return item


async def room(conn: asyncpg.Connection, config: Config, item: Visible) -> int:
    """Bytes the item's owner (user or organization) may still add; locks the owner's row."""
    organization_id = item.row["organization_id"]
    if organization_id is not None:
        return await organization_room(conn, config, organization_id)
    await conn.execute("SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE", item.row["user_id"])
    return await _room(conn, config, config.user_attachment_limit, "c.user_id = $1", item.row["user_id"])


async def organization_room(conn: asyncpg.Connection, config: Config, organization_id: uuid.UUID) -> int:
    """Bytes the organization's items may still add; locks the organization's row."""
    await conn.execute("SELECT 1 FROM organizations WHERE id = $1 FOR NO KEY UPDATE", organization_id)
    return await _room(conn, config, config.org_attachment_limit, "c.organization_id = $1", organization_id)


async def _room(conn: asyncpg.Connection, config: Config, limit: int | None, owner: str, owner_id: uuid.UUID) -> int:
    per_file = config.max_file_size * 1024
    if limit is None:
        return per_file
    used = await conn.fetchval(
        f"SELECT coalesce(sum(a.size), 0) FROM attachments a JOIN ciphers c ON c.id = a.cipher_id WHERE {owner}",
        owner_id)
    return max(0, min(per_file, limit * 1024 - used))


def check_room(size: int, available: int, config: Config) -> None:
    if size > config.max_file_size * 1024:
        raise ApiError(f"Max file size is {size_name(config.max_file_size * 1024)}.")
    if size > available:
        raise ApiError("Not enough storage available.")


async def announce(conn: asyncpg.Connection, config: Config, cipher_id: uuid.UUID, user_id: uuid.UUID,
                   attachment: AttachmentInput) -> tuple[str, Visible]:
    """A v2 upload's first step: the row, not yet uploaded, its announced size counted at once."""
    item = await editable(conn, cipher_id, user_id, lock=True)
    if attachment.last_known_revision_date is not None:
        ciphers.check_revision(item.row, attachment.last_known_revision_date)
    check_room(attachment.file_size, await room(conn, config, item), config)
    attachment_id = new_id()
    await conn.execute(
        "INSERT INTO attachments (id, cipher_id, file_name, key, size, file_key) VALUES ($1, $2, $3, $4, $5, $6)",
        attachment_id, cipher_id, attachment.file_name, attachment.key, attachment.file_size,
        file_key(cipher_id, attachment_id))
    await touch(conn, cipher_id)
    return attachment_id, await ciphers.require(conn, cipher_id, user_id)


async def find(conn: asyncpg.Connection | asyncpg.Pool, cipher_id: uuid.UUID, attachment_id: str, *,
               lock: bool = False) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM attachments WHERE cipher_id = $1 AND id = $2" + (" FOR UPDATE" if lock else ""),
        cipher_id, attachment_id)


async def mark_uploaded(conn: asyncpg.Connection, cipher_id: uuid.UUID, user_id: uuid.UUID, attachment_id: str,
                        size: int) -> None:
    """The announced file is in: the attachment shows, the item's devices hear of it (the caller
    still an editor of the item)."""
    await editable(conn, cipher_id, user_id, lock=True)
    row = await find(conn, cipher_id, attachment_id, lock=True)
    if row is None or row["uploaded"]:
        raise NotFound("Attachment")
    await conn.execute("UPDATE attachments SET uploaded = true, size = $3 WHERE cipher_id = $1 AND id = $2",
                       cipher_id, attachment_id, size)
    await touch(conn, cipher_id)


async def add_uploaded(conn: asyncpg.Connection, config: Config, cipher_id: uuid.UUID, user_id: uuid.UUID,
                       attachment_id: str, file_name: str, key: str | None, size: int) -> Visible:
    """The legacy upload's row, once its file is stored; refused if the room went meanwhile."""
    item = await editable(conn, cipher_id, user_id, lock=True)
    check_room(size, await room(conn, config, item), config)
    await conn.execute(
        "INSERT INTO attachments (id, cipher_id, file_name, key, size, uploaded, file_key)"
        " VALUES ($1, $2, $3, $4, $5, true, $6)",
        attachment_id, cipher_id, file_name, key, size, file_key(cipher_id, attachment_id))
    await touch(conn, cipher_id)
    return await ciphers.require(conn, cipher_id, user_id)


async def remove(conn: asyncpg.Connection, cipher_id: uuid.UUID, user_id: uuid.UUID, attachment_id: str) -> Visible:
    await editable(conn, cipher_id, user_id, lock=True)
    if await conn.fetchval("DELETE FROM attachments WHERE cipher_id = $1 AND id = $2 RETURNING id",
                           cipher_id, attachment_id) is None:
        raise NotFound("Attachment")
    await touch(conn, cipher_id)
    return await ciphers.require(conn, cipher_id, user_id)


async def touch(conn: asyncpg.Connection, cipher_id: uuid.UUID) -> None:
    """Move the item's revision date (the stamp trigger does): SyncCipherUpdate."""
    await conn.execute("UPDATE ciphers SET revision_date = revision_date WHERE id = $1", cipher_id)


# ---- an old attachment re-encrypted for an organization, before its item is shared ----------

async def shareable(conn: asyncpg.Connection | asyncpg.Pool, cipher_id: uuid.UUID, user_id: uuid.UUID,
                    attachment_id: str, organization_id: uuid.UUID) -> None:
    """The caller's own item, the caller a member of the organization it is to go to, and the
    attachment one of the item's files: else as unknown as a missing one."""
    item = await ciphers.require(conn, cipher_id, user_id)
    if item.row["user_id"] != user_id:
        raise NotFound("Cipher")
    await memberships.require_member(conn, organization_id, user_id)
    row = await find(conn, cipher_id, attachment_id)
    if row is None or not row["uploaded"]:
        raise NotFound("Attachment")


async def hold_share(conn: asyncpg.Connection, config: Config, cipher_id: uuid.UUID, user_id: uuid.UUID,
                     attachment_id: str, organization_id: uuid.UUID, file_name: str, key: str, size: int,
                     stored: str) -> None:
    """The uploaded file (under stored) waits for the item's share; one held before for the
    attachment is replaced, its file released. The item does not change, so no one is told."""
    await shareable(conn, cipher_id, user_id, attachment_id, organization_id)
    check_room(size, await organization_room(conn, config, organization_id), config)
    await conn.execute("DELETE FROM attachment_shares WHERE attachment_id = $1", attachment_id)
    await conn.execute(
        "INSERT INTO attachment_shares (attachment_id, organization_id, file_name, key, size, file_key)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        attachment_id, organization_id, file_name, key, size, stored)
