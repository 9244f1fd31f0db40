"""Where attachments and Send files live: one interface, two backends.

Every API replica reaches the same files without a shared disk: by default in PostgreSQL itself
(`postgres.PostgresStore`: a database backup is a complete backup), or in an S3-compatible
object store (`s3.S3Store`). A file goes in and comes out as a stream of chunks, so neither an
upload nor a download holds a whole file in memory; a file is stored whole or not at all.

Keys name what a file belongs to (`attachments/<item>/<attachment>`, `sends/<send>/<file>`);
the files of deleted rows are released through the `released_files` queue (db/sql/files.sql)
and removed by `vaultapi.housekeeping`.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterable, AsyncIterator, Iterable

import asyncpg

from core.config import Config

__all__ = ["CHUNK", "FileMissing", "FileStore", "FileTooLarge", "open_store"]

#: bytes gathered before they are written on: one row, or at least one S3 part (5 MiB is S3's minimum)
CHUNK = 1024 * 1024


class FileMissing(LookupError):
    """No complete file is stored under the key."""


class FileTooLarge(ValueError):
    """The stream went past the size allowed; nothing was kept."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit


class FileStore(abc.ABC):
    """Files by key, written once, read as chunks, deleted."""

    @abc.abstractmethod
    async def put(self, key: str, chunks: AsyncIterable[bytes | memoryview], max_size: int) -> int:
        """Store the stream under key and return its size. Past max_size bytes it raises
        FileTooLarge; on that or any other failure (the client went away) nothing is kept.
        A key is written once: a second put of a stored key fails."""

    @abc.abstractmethod
    async def size(self, key: str) -> int:
        """The stored file's size; FileMissing when there is none."""

    @abc.abstractmethod
    def get(self, key: str) -> AsyncIterator[bytes]:
        """The file's bytes in chunks; FileMissing on the first step when there is none."""

    @abc.abstractmethod
    async def delete(self, keys: Iterable[str]) -> None:
        """Remove these files; a key with no file is no error."""

    @abc.abstractmethod
    async def remove_abandoned(self, older_than_seconds: float) -> int:
        """Remove what interrupted writes of a process that died left half-written; returns
        how many."""

    async def close(self) -> None:
        """Let go of connections the store holds of its own."""


async def open_store(config: Config, pool: asyncpg.Pool) -> FileStore:
    """The store FILE_STORAGE names."""
    if config.file_storage == "s3":
        from vaultapi.storage.s3 import S3Store

        return await S3Store.open(config)
    from vaultapi.storage.postgres import PostgresStore

    return PostgresStore(pool)


async def rechunked(chunks: AsyncIterable[bytes | memoryview], size: int, max_size: int) -> AsyncIterator[bytearray]:
    """The stream in pieces of size bytes (the last one may be shorter), refused past max_size
    bytes in all: what a backend writes at a time, and never more than that in memory. Each
    piece is filled in place in a buffer of its own, allocated once at its final size (no
    regrowing, no copy on the way out), and no larger than max_size."""
    capacity = min(size, max_size)
    buffer: bytearray | None = None
    filled = total = 0
    async for chunk in chunks:
        total += len(chunk)
        if total > max_size:
            raise FileTooLarge(max_size)
        view = memoryview(chunk)
        while view:
            if buffer is None:
                buffer, filled = bytearray(capacity), 0
            taken = min(len(view), capacity - filled)
            buffer[filled:filled + taken] = view[:taken]
            filled += taken
            view = view[taken:]
            if filled == capacity:
                yield buffer
                buffer = None
    if buffer is not None:
        del buffer[filled:]
        yield buffer
    elif total == 0:
        yield bytearray()
