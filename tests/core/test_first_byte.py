"""A connection that keeps the API or the hub waiting for its request is closed within
REQUEST_HEADER_TIMEOUT; one that was served keeps its keep-alive time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import pytest

from tests.vaultapi.conftest import running_api
from tests.wshub.support import hub_config, start_hub

TIMEOUT = 1


@asynccontextmanager
async def server(kind: str, database_url: str) -> AsyncIterator[tuple[str, int]]:
    if kind == "api":
        async with running_api(database_url, request_header_timeout=TIMEOUT) as url:
            address = urlsplit(url)
            yield address.hostname, address.port
        return
    hub = await start_hub(database_url, hub_config(request_header_timeout=TIMEOUT))
    try:
        host, port = hub.base.split(":")
        yield host, int(port)
    finally:
        await hub.stop()


async def _closed_after(reader: asyncio.StreamReader, limit: float) -> float:
    """Seconds until the server closed the connection (reading whatever it answered first)."""
    started = time.monotonic()
    async with asyncio.timeout(limit):
        while await reader.read(65536):
            pass
    return time.monotonic() - started


@pytest.mark.parametrize("kind", ["api", "hub"])
async def test_a_connection_that_never_sends_a_byte_is_closed_soon(kind: str, database_url: str) -> None:
    async with server(kind, database_url) as (host, port):
        reader, writer = await asyncio.open_connection(host, port)
        # Sanic's own waits would be its keep-alive time (30 s on the hub, 120 s on the API)
        assert await _closed_after(reader, 10) < 3 * TIMEOUT
        writer.close()


@pytest.mark.parametrize("kind", ["api", "hub"])
async def test_headers_sent_a_byte_at_a_time_are_cut_off(kind: str, database_url: str) -> None:
    async with server(kind, database_url) as (host, port):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET /alive HTTP/1.1\r\nHost: x\r\n")
        await writer.drain()
        assert await _closed_after(reader, 10) < 3 * TIMEOUT
        writer.close()


@pytest.mark.parametrize("kind", ["api", "hub"])
async def test_a_served_connection_keeps_its_keep_alive_time(kind: str, database_url: str) -> None:
    async with server(kind, database_url) as (host, port):
        reader, writer = await asyncio.open_connection(host, port)
        for _ in range(2):
            path = "/alive" if kind == "hub" else "/api/version"
            writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert b" 200 " in head.split(b"\r\n")[0]
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            await reader.readexactly(length)
            await asyncio.sleep(3 * TIMEOUT)  # longer than a new connection may stay silent
        writer.close()
