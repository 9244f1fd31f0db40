"""Files held for an organization until an item is shared to it (attachment_shares, migration
0013): an attachment without a key of its own, uploaded again by the client with a new key and
name encrypted for the organization. The share (vaultapi/models/ciphers.py) swaps them in."""

from __future__ import annotations

import uuid

import asyncpg

__all__ = ["held_for", "take_shares"]


async def held_for(conn: asyncpg.Connection, cipher_id: uuid.UUID, organization_id: uuid.UUID) -> set[str]:
    """The item's attachments with a file held for the organization."""
    rows = await conn.fetch(
        "SELECT s.attachment_id FROM attachment_shares s JOIN attachments a ON a.id = s.attachment_id"
        " WHERE a.cipher_id = $1 AND s.organization_id = $2", cipher_id, organization_id)
    return {row["attachment_id"] for row in rows}


async def take_shares(conn: asyncpg.Connection, cipher_id: uuid.UUID, organization_id: uuid.UUID) -> None:
    """The item went to the organization: its attachments take the files, names and keys held
    for it, their old files are released, and what was held for another organization goes."""
    await conn.execute(
        """
        WITH held AS (
            SELECT s.attachment_id, s.file_name, s.key, s.size, s.file_key, a.file_key AS old_file_key
              FROM attachment_shares s JOIN attachments a ON a.id = s.attachment_id
             WHERE a.cipher_id = $1 AND s.organization_id = $2
               FOR UPDATE OF s, a
        ), released AS (
            INSERT INTO released_files (key) SELECT old_file_key FROM held ON CONFLICT DO NOTHING
        ), taken AS (
            UPDATE attachments a SET file_name = h.file_name, key = h.key, size = h.size, file_key = h.file_key
              FROM held h WHERE a.id = h.attachment_id
        )
        UPDATE attachment_shares s SET file_key = NULL FROM held h WHERE s.attachment_id = h.attachment_id
        """, cipher_id, organization_id)
    await conn.execute(
        "DELETE FROM attachment_shares s USING attachments a WHERE a.id = s.attachment_id AND a.cipher_id = $1",
        cipher_id)
