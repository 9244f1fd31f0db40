"""What the benchmarks share: a scratch database for one run, a free loopback port, and waiting
for a server to answer /alive."""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from db import migrate
from db.embedded import resolve_database_url

__all__ = ["execute", "free_port", "scratch_database", "until_alive"]


@contextmanager
def scratch_database(*, migrated: bool = True) -> Iterator[str]:
    """The URL of a database made for this run and dropped after it, on the server DATABASE_URL
    names or on an embedded PostgreSQL. Not for use inside a running event loop."""
    name = f"pgwarden_bench_{os.getpid()}"
    with tempfile.TemporaryDirectory() as folder:
        server_url, embedded = resolve_database_url(os.environ.get("DATABASE_URL"), folder)
        try:
            asyncio.run(execute(server_url, f"CREATE DATABASE {name}"))
            try:
                url = urlunsplit(urlsplit(server_url)._replace(path="/" + name))
                if migrated:
                    migrate.upgrade(url)
                yield url
            finally:
                asyncio.run(execute(server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        finally:
            if embedded is not None:
                embedded.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def until_alive(port: int, what: str) -> None:
    """Return once the server on the loopback port answers GET /alive with a 200 (20 s at most)."""
    for _ in range(400):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /alive HTTP/1.1\r\nHost: x\r\n\r\n")
            answered = b" 200 " in await reader.read(100)
            writer.close()
            if answered:
                return
        except OSError:
            pass
        await asyncio.sleep(0.05)
    raise RuntimeError(f"the {what} did not start")


async def execute(url: str, statement: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()
