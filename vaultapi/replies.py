"""Replies too large to build in one step: a JSON object whose one big list goes out in pieces.

A sync holds the whole vault, tens of megabytes for a large one. Joined into one string and
written at once it would hold the event loop for as long as the copying takes; sent piece by
piece (chunked), each piece waits its turn and the socket's pace.
"""

from __future__ import annotations

from typing import Any

from sanic import Request
from sanic.response import json_dumps

__all__ = ["PIECE", "send_json_with_items"]

#: bytes gathered before a piece goes out
PIECE = 256 * 1024


async def send_json_with_items(request: Request, value: dict[str, Any], key: str, items: list[bytes]) -> None:
    """Send the bytes json_dumps(value) would give, value[key] being the list of the encoded items."""
    names = list(value)
    at = names.index(key)
    before = [f"{json_dumps(name)}:{json_dumps(value[name])}" for name in names[:at]]
    after = [f"{json_dumps(name)}:{json_dumps(value[name])}" for name in names[at + 1:]]
    head = "{" + "".join(member + "," for member in before) + json_dumps(key) + ":["
    tail = "]" + "".join("," + member for member in after) + "}"

    response = await request.respond(content_type="application/json")
    piece = bytearray(head.encode())
    for index, item in enumerate(items):
        if index:
            piece += b","
        piece += item
        if len(piece) >= PIECE:
            await response.send(bytes(piece))
            piece.clear()
    piece += tail.encode()
    await response.send(bytes(piece))
    await response.eof()
