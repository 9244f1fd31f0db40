"""The file stores, both backends through the same tests: whole files or nothing, streamed in
and out in chunks, each key written once."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from core.config import Config
from tests.conftest import PostgresServer, with_database
from tests.support.s3server import S3Server
from tests.vaultapi.conftest import s3_settings
from vaultapi.database import open_pool
from vaultapi.storage import CHUNK, FileMissing, FileStore, FileTooLarge, open_store
from vaultapi.storage.postgres import PostgresStore
from vaultapi.storage.s3 import PART


@pytest.fixture(params=["postgresql", "s3"])
async def store(request: pytest.FixtureRequest, database_url: str) -> AsyncIterator[FileStore]:
    settings = s3_settings(request.getfixturevalue("s3")) if request.param == "s3" else {}
    pool = await open_pool(database_url)
    opened = await open_store(Config(database_url=database_url, **settings), pool)
    try:
        yield opened
    finally:
        await opened.close()
        await pool.close()


async def pieces(data: bytes, size: int = 65_521, fail_after: int | None = None) -> AsyncIterator[bytes]:
    """data as a client's body arrives: in odd-sized pieces; an error after fail_after bytes."""
    for start in range(0, len(data), size):
        if fail_after is not None and start >= fail_after:
            raise ConnectionResetError("the client went away")
        yield data[start:start + size]


async def read(store: FileStore, key: str) -> list[bytes]:
    return [chunk async for chunk in store.get(key)]


async def assert_absent(store: FileStore, key: str) -> None:
    with pytest.raises(FileMissing):
        await store.size(key)
    with pytest.raises(FileMissing):
        await read(store, key)


#: larger than several S3 parts and PostgreSQL chunks, and not a multiple of either
LARGE = 2 * PART + 3 * CHUNK + 12_345


async def test_a_file_goes_in_and_comes_out_unchanged_in_chunks(store: FileStore) -> None:
    data = os.urandom(LARGE)
    key = f"attachments/{uuid.uuid4()}/a"
    assert await store.put(key, pieces(data), max_size=LARGE) == LARGE
    assert await store.size(key) == LARGE
    chunks = await read(store, key)
    assert b"".join(chunks) == data
    # streamed: never the whole file at once
    assert len(chunks) > 2 and max(map(len, chunks)) <= CHUNK + 65_521


async def test_small_and_empty_files(store: FileStore) -> None:
    for data in (b"", b"x", os.urandom(CHUNK)):
        key = f"sends/{uuid.uuid4()}/f"
        assert await store.put(key, pieces(data), max_size=CHUNK) == len(data)
        assert b"".join(await read(store, key)) == data


async def test_a_file_past_its_limit_leaves_nothing(store: FileStore) -> None:
    key = f"attachments/{uuid.uuid4()}/big"
    with pytest.raises(FileTooLarge):
        await store.put(key, pieces(os.urandom(LARGE)), max_size=LARGE - 1)
    await assert_absent(store, key)
    await _nothing_half_written(store)


async def test_an_interrupted_upload_leaves_nothing(store: FileStore) -> None:
    key = f"attachments/{uuid.uuid4()}/cut"
    with pytest.raises(ConnectionResetError):
        await store.put(key, pieces(os.urandom(LARGE), fail_after=PART + CHUNK), max_size=LARGE)
    await assert_absent(store, key)
    await _nothing_half_written(store)


async def test_a_key_is_written_once(store: FileStore) -> None:
    key = f"attachments/{uuid.uuid4()}/once"
    first = os.urandom(1000)
    await store.put(key, pieces(first), max_size=CHUNK)
    with pytest.raises(Exception):
        await store.put(key, pieces(os.urandom(1000)), max_size=CHUNK)
    assert b"".join(await read(store, key)) == first


async def test_delete(store: FileStore) -> None:
    kept, gone = f"sends/{uuid.uuid4()}/k", f"sends/{uuid.uuid4()}/g"
    for key in (kept, gone):
        await store.put(key, pieces(b"data"), max_size=10)
    await store.delete([gone, f"sends/{uuid.uuid4()}/never-stored"])
    await assert_absent(store, gone)
    assert b"".join(await read(store, kept)) == b"data"


async def test_what_a_dead_process_left_half_written_is_removed(store: FileStore, database_url: str) -> None:
    if isinstance(store, PostgresStore):
        conn = await asyncpg.connect(database_url)
        await conn.execute("INSERT INTO stored_files (key, created_at) VALUES ('attachments/x/old', now() - interval '2 days')")
        await conn.execute("INSERT INTO stored_file_chunks (key, seq, data) VALUES ('attachments/x/old', 0, 'abc')")
        await conn.execute("INSERT INTO stored_files (key) VALUES ('attachments/x/new')")
        assert await store.remove_abandoned(3600) == 1
        assert await conn.fetchval("SELECT array_agg(key) FROM stored_files") == ["attachments/x/new"]
        assert await conn.fetchval("SELECT count(*) FROM stored_file_chunks") == 0
        await conn.close()
    else:
        upload = await store.client.create_multipart_upload(Bucket=store.bucket, Key="attachments/x/old")
        await store.client.upload_part(Bucket=store.bucket, Key="attachments/x/old", UploadId=upload["UploadId"],
                                       PartNumber=1, Body=b"abc")
        assert await store.remove_abandoned(0) == 1
        assert (await store.client.list_multipart_uploads(Bucket=store.bucket)).get("Uploads", []) == []


async def test_a_database_copy_holds_the_files(database_url: str, pg_server: PostgresServer) -> None:
    """FILE_STORAGE=postgresql: whatever copies the database (a backup, a template) copies the files."""
    pool = await open_pool(database_url)
    data = os.urandom(3 * CHUNK + 7)
    await PostgresStore(pool).put("attachments/a/b", pieces(data), max_size=len(data))
    await pool.close()
    source = database_url.rsplit("/", 1)[1]
    copy = f"{source}_copy"
    admin = await asyncpg.connect(pg_server.url)
    await admin.execute(f'CREATE DATABASE "{copy}" TEMPLATE "{source}"')
    try:
        copied = await open_pool(with_database(pg_server.url, copy))
        assert b"".join(await read(PostgresStore(copied), "attachments/a/b")) == data
        await copied.close()
    finally:
        await admin.execute(f'DROP DATABASE "{copy}"')
        await admin.close()


async def test_a_chunk_the_database_refuses_mid_upload_leaves_nothing(database_url: str) -> None:
    """FILE_STORAGE=postgresql writes several chunks at once: one failing stops the others and
    the upload, and nothing of the file stays."""
    pool = await open_pool(database_url)
    store = PostgresStore(pool)
    key = f"attachments/{uuid.uuid4()}/refused"

    async def file_row_gone_after_two_chunks() -> AsyncIterator[bytes]:
        sent = 0
        async for piece in pieces(os.urandom(LARGE)):
            yield piece
            sent += len(piece)
            if sent - len(piece) < 2 * CHUNK <= sent:
                await pool.execute("DELETE FROM stored_files WHERE key = $1", key)

    try:
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await store.put(key, file_row_gone_after_two_chunks(), max_size=LARGE)
        await assert_absent(store, key)
        await _nothing_half_written(store)
    finally:
        await pool.close()


async def _nothing_half_written(store: FileStore) -> None:
    if isinstance(store, PostgresStore):
        assert await store.pool.fetchval("SELECT count(*) FROM stored_file_chunks") == 0
        assert await store.pool.fetchval("SELECT count(*) FROM stored_files") == 0
    else:
        assert (await store.client.list_multipart_uploads(Bucket=store.bucket)).get("Uploads", []) == []
        assert (await store.client.list_objects_v2(Bucket=store.bucket)).get("KeyCount", 0) == 0
