"""What the benchmarks share: a scratch database for one run, a free loopback port, waiting for
a server to answer /alive, a user's event as the triggers publish it, percentiles, and the median
and spread of runs."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any
from contextlib import contextmanager
from datetime import datetime, timezone
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from db import migrate
from db.embedded import resolve_database_url
from db.events import PushType

__all__ = ["execute", "folder_event", "free_port", "percentile", "print_row", "print_table_head", "run_on_scratch_database",
           "scratch_database", "spread", "until_alive"]


@contextmanager
def scratch_database(*, migrated: bool = True) -> Iterator[str]:
    """The URL of a database made for this run and dropped after it, on the server DATABASE_URL
    names or on an embedded PostgreSQL. Not for use inside a running event loop."""
    name = f"pgwarden_bench_{os.getpid()}"
    with tempfile.TemporaryDirectory() as folder:
        # as root the embedded server runs as its own user, who must pass through this folder
        os.chmod(folder, 0o711)
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


def folder_event(user: str) -> str:
    """A NOTIFY payload: a folder of ``user`` changed, dated now (the time its clients measure from)."""
    return json.dumps({"type": int(PushType.SYNC_FOLDER_UPDATE), "user": user, "org": None,
                       "item": str(uuid.uuid4()), "date": datetime.now(timezone.utc).isoformat(), "device": None,
                       "collections": None, "moved_from": None})


async def execute(url: str, statement: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def spread(values: list[float], fmt: str) -> str:
    """``median [min-max]`` of the runs' figures, each formatted with ``fmt``."""
    if not values:
        return "-"
    return f"{format(statistics.median(values), fmt)} [{format(min(values), fmt)}-{format(max(values), fmt)}]"


def print_table_head(columns: list[tuple[str, int]]) -> None:
    """A Markdown table's head: (name, width) per column."""
    print("| " + " | ".join(f"{name:>{width}}" for name, width in columns) + " |")
    print("|" + "|".join("-" * (width + 2) for _, width in columns) + "|")


def print_row(cells: list[str], columns: list[tuple[str, int]]) -> None:
    print("| " + " | ".join(f"{cell:>{width}}" for cell, (_, width) in zip(cells, columns, strict=True)) + " |")


def run_on_scratch_database(bench: Callable[[str, Any], Awaitable[None]], args: Any) -> int:
    """Run ``bench(url, args)`` on a scratch database; the exit status of a benchmark's main."""
    with scratch_database() as url:
        asyncio.run(bench(url, args))
    return 0
