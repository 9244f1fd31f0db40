"""Sends: text or a file a user shares through a link, end-to-end encrypted like an item.

The content (name, notes, text, file name) is the client's EncStrings, kept as sent in data.
Who has the link may read the Send (`access`) while it is enabled, not expired, before its
deletion date and under its maximum access count, and with its password when it has one: the
client sends a hash of that password, which is stored hashed again, as a master password is.
Each access is counted in one conditional UPDATE, so concurrent accesses never count past the
maximum. A file Send's file is announced with the Send and uploaded after it (as an
attachment's v2 upload); until then nobody may access it.

Every write is one statement on sends, whose trigger publishes SyncSendCreate, SyncSendUpdate or
SyncSendDelete to the owner's devices; an access, which changes the count, is an update too.
Sends past their deletion date are deleted by vaultapi/housekeeping.py, their files released.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg

from core.config import Config
from vaultapi.body import Body
from vaultapi.dates import iso
from vaultapi.errors import ApiError, NotFound
from vaultapi.models.attachments import new_id
from vaultapi.models.ciphers import parse_date
from vaultapi.models.file_shapes import size_name
from vaultapi.passwords import hash_password

__all__ = ["FILE", "TEXT", "SendInput", "access_id", "access_json", "count_access", "create",
           "delete", "file_key", "find", "find_by_access_id", "list_for", "mark_file_uploaded", "remove_password",
           "send_json", "update"]

TEXT, FILE = 0, 1
#: AuthType of the clients: who may open the Send
_AUTH_PASSWORD, _AUTH_NONE = 1, 2
#: src/Api/Tools/Models/Request/SendRequestModel.cs and SendTextModel, SendFileModel: EncStrings of 1000
LENGTH = 1_000
#: the client's hash of the Send's password: SendRequestModel.Password, [StringLength(1000)]
PASSWORD_LENGTH = 1_000
#: a deletion date at most this far ahead (SendRequestModel.ValidateEdit)
MAX_LIFETIME = timedelta(days=31)
#: dates in the past, give or take the clients' clocks
_CLOCK_SLACK = timedelta(minutes=1)


def file_key(send_id: uuid.UUID, file_id: str) -> str:
    return f"sends/{send_id}/{file_id}"


def access_id(send_id: uuid.UUID) -> str:
    """The id in a Send's link: the GUID's bytes in .NET's order, base64url without padding."""
    return base64.urlsafe_b64encode(send_id.bytes_le).decode().rstrip("=")


def send_id_of(link_id: str) -> uuid.UUID | None:
    if len(link_id) != 22:
        return None
    try:
        return uuid.UUID(bytes_le=base64.urlsafe_b64decode(link_id + "=="))
    except (binascii.Error, ValueError):
        return None


@dataclass(frozen=True)
class SendInput:
    """A Send as a client sends it to create or edit one (SendRequestModel)."""

    type: int
    data: dict[str, Any]
    key: str
    max_access_count: int | None
    expiration_date: datetime | None
    deletion_date: datetime
    password: str | None
    disabled: bool
    hide_email: bool
    file_length: int | None

    @classmethod
    def parse(cls, body: Body, *, creating: bool) -> SendInput:
        send_type = body.int("type", required=True)
        if send_type not in (TEXT, FILE):
            raise ApiError("Unknown Send type.", field="type")
        data: dict[str, Any] = {
            "name": body.enc_string("name", required=True, max_length=LENGTH),
            "notes": body.enc_string("notes", max_length=LENGTH),
        }
        if send_type == TEXT:
            text = body.object("text", required=True)
            assert text is not None
            data["text"] = {"text": text.enc_string("text", max_length=LENGTH), "hidden": text.bool("hidden")}
        else:
            file = body.object("file", required=True)
            assert file is not None
            data["file"] = {"fileName": file.enc_string("fileName", required=True, max_length=LENGTH)}
        if body.get("emails"):
            raise ApiError("Sends protected by email verification are not available.", field="emails")
        max_access_count = body.int("maxAccessCount")
        if max_access_count is not None and max_access_count < 1:
            raise ApiError("maxAccessCount must be 1 or more.", field="maxAccessCount")
        file_length = body.int("fileLength")
        if file_length is not None and file_length < 0:
            raise ApiError("fileLength must be 0 or more.", field="fileLength")
        send = cls(
            type=send_type, data=data,
            key=body.enc_string("key", required=True, max_length=LENGTH) or "",
            max_access_count=max_access_count,
            expiration_date=parse_date(body.get("expirationDate"), "expirationDate"),
            deletion_date=parse_date(body.get("deletionDate"), "deletionDate", required=True),  # type: ignore[arg-type]
            password=body.str("password", max_length=PASSWORD_LENGTH) or None,
            disabled=body.bool("disabled"), hide_email=body.bool("hideEmail"), file_length=file_length,
        )
        send._check_dates(creating)
        return send

    def _check_dates(self, creating: bool) -> None:
        # as SendRequestModel.ValidateCreation and ValidateEdit
        now = datetime.now(timezone.utc)
        soon = now + _CLOCK_SLACK
        if self.deletion_date <= soon:
            raise ApiError("You cannot have a Send with a deletion date in the past. Adjust the deletion date and"
                           " try again.", field="deletionDate")
        if self.deletion_date > now + MAX_LIFETIME:
            raise ApiError("You cannot have a Send with a deletion date that far into the future. Adjust the"
                           " Deletion Date to a value less than 31 days from now and try again.", field="deletionDate")
        if self.expiration_date is not None:
            if self.expiration_date <= soon:
                raise ApiError("You cannot create a Send that is already expired. Adjust the expiration date and"
                               " try again." if creating else
                               "You cannot have a Send with an expiration date in the past. Adjust the expiration"
                               " date and try again.", field="expirationDate")
            if self.expiration_date > self.deletion_date:
                raise ApiError("You cannot have a Send with an expiration date greater than the deletion date."
                               " Adjust the expiration date and try again.", field="expirationDate")


def _file_json(row: asyncpg.Record) -> dict[str, Any] | None:
    if row["type"] != FILE:
        return None
    size = row["file_size"] or 0
    return {"id": row["file_id"], "fileName": row["data"]["file"]["fileName"], "size": str(size),
            "sizeName": size_name(size)}


def send_json(row: asyncpg.Record) -> dict[str, Any]:
    """SendResponseModel: a Send as its owner sees it."""
    data = row["data"]
    return {
        "id": str(row["id"]),
        "accessId": access_id(row["id"]),
        "type": row["type"],
        "authType": _AUTH_PASSWORD if row["password_hash"] else _AUTH_NONE,
        "name": data["name"],
        "notes": data.get("notes"),
        "file": _file_json(row),
        "text": data.get("text"),
        "key": row["key"],
        "maxAccessCount": row["max_access_count"],
        "accessCount": row["access_count"],
        # the clients only check that there is one; the hash itself stays here
        "password": "set" if row["password_hash"] else None,
        "emails": None,
        "disabled": row["disabled"],
        "revisionDate": iso(row["revision_date"]),
        "expirationDate": iso(row["expiration_date"]),
        "deletionDate": iso(row["deletion_date"]),
        "hideEmail": row["hide_email"],
        "object": "send",
    }


def access_json(row: asyncpg.Record, creator: str | None) -> dict[str, Any]:
    """SendAccessResponseModel: what whoever has the link reads (never the notes)."""
    data = row["data"]
    return {"id": access_id(row["id"]), "type": row["type"],
            "authType": _AUTH_PASSWORD if row["password_hash"] else _AUTH_NONE, "name": data["name"],
            "file": _file_json(row), "text": data.get("text"), "expirationDate": iso(row["expiration_date"]),
            "creatorIdentifier": creator, "object": "send-access"}


# ---- reads ------------------------------------------------------------------------------------

async def list_for(conn: asyncpg.Connection | asyncpg.Pool, user_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM sends WHERE user_id = $1 ORDER BY creation_date, id", user_id)


async def find(conn: asyncpg.Connection | asyncpg.Pool, send_id: uuid.UUID, user_id: uuid.UUID, *,
               lock: bool = False) -> asyncpg.Record:
    """The caller's own Send; another's is as unknown as a missing one."""
    row = await conn.fetchrow("SELECT * FROM sends WHERE id = $1 AND user_id = $2" + (" FOR UPDATE" if lock else ""),
                              send_id, user_id)
    if row is None:
        raise NotFound("Send")
    return row


_OPEN = """NOT disabled AND deletion_date > now() AND (expiration_date IS NULL OR expiration_date > now())
           AND (max_access_count IS NULL OR access_count < max_access_count) AND (type = 0 OR file_uploaded)"""


async def find_by_access_id(conn: asyncpg.Connection | asyncpg.Pool, link_id: str) -> asyncpg.Record:
    """The Send a link names, with its owner's email, while it may be accessed; else 404."""
    send_id = send_id_of(link_id)
    row = None if send_id is None else await conn.fetchrow(
        f"SELECT s.*, u.email AS owner_email FROM sends s JOIN users u ON u.id = s.user_id WHERE s.id = $1 AND {_OPEN}",
        send_id)
    if row is None:
        raise NotFound("Send")
    return row


async def count_access(conn: asyncpg.Connection | asyncpg.Pool, send_id: uuid.UUID) -> bool:
    """Count one access, only while the Send may still be accessed: one statement, so two
    accesses at once take the last one in turn and only one gets it."""
    return await conn.fetchval(
        f"UPDATE sends SET access_count = access_count + 1 WHERE id = $1 AND {_OPEN} RETURNING true",
        send_id) is not None


# ---- writes: call them inside publish.write ---------------------------------------------------

async def _room(conn: asyncpg.Connection, config: Config, user_id: uuid.UUID, size: int) -> None:
    if size > config.max_file_size * 1024:
        raise ApiError(f"Max file size is {size_name(config.max_file_size * 1024)}.")
    await conn.execute("SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE", user_id)
    if config.user_send_limit is not None:
        used = await conn.fetchval("SELECT coalesce(sum(file_size), 0) FROM sends WHERE user_id = $1", user_id)
        if used + size > config.user_send_limit * 1024:
            raise ApiError("Not enough storage available.")


async def create(conn: asyncpg.Connection, config: Config, user_id: uuid.UUID, send: SendInput) -> asyncpg.Record:
    """SyncSendCreate. A file Send's size is the one announced (fileLength), checked here; its
    file comes after."""
    file_id = file_size = stored = None
    if send.type == FILE:
        if send.file_length is None:
            raise ApiError("Invalid content. File size hint is required.", field="fileLength")
        await _room(conn, config, user_id, send.file_length)
        file_id, file_size = new_id(), send.file_length
    password_hash = await hash_password(send.password) if send.password else None
    send_id = uuid.uuid4()
    if file_id is not None:
        stored = file_key(send_id, file_id)
    return await conn.fetchrow(
        """
        INSERT INTO sends (id, user_id, type, data, key, password_hash, max_access_count, disabled, hide_email,
                           file_id, file_size, file_key, expiration_date, deletion_date)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING *
        """,
        send_id, user_id, send.type, send.data, send.key, password_hash, send.max_access_count, send.disabled,
        send.hide_email, file_id, file_size, stored, send.expiration_date, send.deletion_date)


async def update(conn: asyncpg.Connection, send_id: uuid.UUID, user_id: uuid.UUID, send: SendInput) -> asyncpg.Record:
    """SyncSendUpdate. A Send keeps its type and its file; a password given replaces the one it
    had, none keeps it (remove_password takes it away)."""
    row = await find(conn, send_id, user_id, lock=True)
    if row["type"] != send.type:
        raise ApiError("Sends' type can't be changed.", field="type")
    data = {**send.data, "file": row["data"].get("file")} if send.type == FILE else send.data
    password_hash = await hash_password(send.password) if send.password else row["password_hash"]
    return await conn.fetchrow(
        """
        UPDATE sends SET data = $2, key = $3, password_hash = $4, max_access_count = $5, disabled = $6,
                         hide_email = $7, expiration_date = $8, deletion_date = $9
         WHERE id = $1 RETURNING *
        """,
        send_id, data, send.key,
        password_hash, send.max_access_count, send.disabled, send.hide_email, send.expiration_date,
        send.deletion_date)


async def remove_password(conn: asyncpg.Connection, send_id: uuid.UUID, user_id: uuid.UUID) -> asyncpg.Record:
    await find(conn, send_id, user_id, lock=True)
    return await conn.fetchrow("UPDATE sends SET password_hash = NULL WHERE id = $1 RETURNING *", send_id)


async def delete(conn: asyncpg.Connection, send_id: uuid.UUID, user_id: uuid.UUID) -> None:
    """SyncSendDelete; the file, if any, is released."""
    if await conn.fetchval("DELETE FROM sends WHERE id = $1 AND user_id = $2 RETURNING id", send_id, user_id) is None:
        raise NotFound("Send")


async def mark_file_uploaded(conn: asyncpg.Connection, send_id: uuid.UUID, user_id: uuid.UUID, file_id: str,
                             size: int) -> None:
    row = await find(conn, send_id, user_id, lock=True)
    if row["file_id"] != file_id or row["file_uploaded"]:
        raise NotFound("Send file")
    await conn.execute("UPDATE sends SET file_uploaded = true, file_size = $2 WHERE id = $1", send_id, size)
