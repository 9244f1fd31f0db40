"""Files in PostgreSQL: one row per file (stored_files) and its bytes in rows of CHUNK bytes
(stored_file_chunks, stored without compression: the clients' files are encrypted).

Each chunk is written, and read, with a connection taken from the pool for that chunk only, so
a slow client never holds a connection between chunks; the database's work on a few chunks
at once (WRITERS) overlaps the client's on the next. A file counts once its last chunk is in
(complete); that commit waits for the disk, so the chunks' own commits need not
(synchronous_commit off for them: a crash before it leaves an incomplete file, which
remove_abandoned removes, as it does what a dying process cut short); a write that fails
removes what it wrote.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Iterable

import asyncpg

from vaultapi.storage import CHUNK, FileMissing, FileStore, rechunked

__all__ = ["PostgresStore"]

#: chunk writes of one upload at once, each on a pool connection of its own: PostgreSQL spends
#: most of an upload's time on a chunk's rows and WAL, and several backends share that work
WRITERS = 3

_WRITE_CHUNK = ("INSERT INTO stored_file_chunks (key, seq, data)"
                " SELECT $1, $2, $3 FROM set_config('synchronous_commit', 'off', true)")


class PostgresStore(FileStore):
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def put(self, key: str, chunks: AsyncIterable[bytes | memoryview], max_size: int) -> int:
        await self.pool.execute("INSERT INTO stored_files (key) VALUES ($1)", key)
        writing: set[asyncio.Task[None]] = set()
        try:
            size = 0
            seq = 0
            async for chunk in rechunked(chunks, CHUNK, max_size):
                # WRITERS chunks are written while the next one arrives: WRITERS + 1 in memory at most
                if len(writing) == WRITERS:
                    done, writing = await asyncio.wait(writing, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        task.result()
                writing.add(asyncio.create_task(self._write_chunk(key, seq, chunk)))
                size += len(chunk)
                seq += 1
            await asyncio.gather(*writing)
            await self.pool.execute("UPDATE stored_files SET (complete, size) = (true, $2) WHERE key = $1",
                                    key, size)
            return size
        except BaseException:
            for task in writing:
                task.cancel()
            await asyncio.gather(*writing, return_exceptions=True)
            # shielded: a cancelled request still takes its half-written file with it
            await asyncio.shield(self.delete([key]))
            raise

    async def _write_chunk(self, key: str, seq: int, chunk: bytearray) -> None:
        # a chunk's commit does not wait for its WAL to reach the disk: the file counts only once
        # marked complete, by a commit that does wait, and so for every chunk before it. One
        # statement in its own transaction, the setting local to it: one round trip, not four
        await self.pool.execute(_WRITE_CHUNK, key, seq, chunk)

    async def size(self, key: str) -> int:
        size = await self.pool.fetchval("SELECT size FROM stored_files WHERE key = $1 AND complete", key)
        if size is None:
            raise FileMissing(key)
        return size

    async def get(self, key: str) -> AsyncIterator[bytes]:
        await self.size(key)
        # the next chunk is read while the current one is sent: two in memory at most
        reading = asyncio.create_task(self._chunk(key, 0))
        try:
            seq = 0
            while (data := await reading) is not None:
                seq += 1
                reading = asyncio.create_task(self._chunk(key, seq))
                yield data
        finally:
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)

    async def _chunk(self, key: str, seq: int) -> bytes | None:
        return await self.pool.fetchval("SELECT data FROM stored_file_chunks WHERE key = $1 AND seq = $2", key, seq)

    async def delete(self, keys: Iterable[str]) -> None:
        await self.pool.execute("DELETE FROM stored_files WHERE key = ANY($1::text[])", list(keys))

    async def remove_abandoned(self, older_than_seconds: float) -> int:
        removed = await self.pool.fetch(
            "DELETE FROM stored_files WHERE NOT complete AND created_at < now() - make_interval(secs => $1)"
            " RETURNING key", older_than_seconds)
        return len(removed)
