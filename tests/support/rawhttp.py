"""HTTP by hand: announce a body, send only its start, and read what the server answers.

httpx writes a whole body before it reads, so it cannot show that a server answered early; and
a server that refuses a body closes the connection, which httpx may report as a write error.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from typing import Any

__all__ = ["RawReply", "send_start_of"]


class RawReply:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return json.loads(self.body)


async def _read_reply(reader: asyncio.StreamReader) -> RawReply:
    status = int((await reader.readline()).split()[1])
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return RawReply(status, headers, body)


async def send_start_of(base_url: str, path: str, content_type: str, declared: int, *,
                        start: bytes | None = None, chunked: bool = False,
                        headers: dict[str, str] | None = None) -> RawReply:
    """Announce a body of `declared` bytes, send only `start` (64 KiB by default), read the reply.

    The reply must come while the rest of the body is unsent: a server that waited for it would
    never answer, and the read times out. Chunked, chunks go out until the reply comes (never
    more than half of `declared`), and the closing chunk never does.
    """
    url = urllib.parse.urlsplit(base_url)
    if start is None:
        start = (b"a=" if "form" in content_type else b'{"email": "') + b"x" * (64 * 1024)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    head = [f"POST {path} HTTP/1.1", f"Host: {url.netloc}", f"Content-Type: {content_type}"]
    head += [f"{name}: {value}" for name, value in (headers or {}).items()]
    head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {declared}")
    try:
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        if not chunked:
            writer.write(start)
            await writer.drain()
            return await asyncio.wait_for(_read_reply(reader), 10)
        reply = asyncio.ensure_future(_read_reply(reader))
        sent = 0
        while not reply.done() and sent < declared // 2:
            writer.write(b"%x\r\n%s\r\n" % (len(start), start))
            sent += len(start)
            try:
                await writer.drain()
            except ConnectionError:
                break
            await asyncio.sleep(0)
        return await asyncio.wait_for(reply, 10)
    finally:
        writer.close()
