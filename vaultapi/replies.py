"""Replies too large to build in one step: a JSON object whose one big list goes out in pieces.

A sync holds the whole vault, tens of megabytes for a large one. Joined into one string and
written at once it would hold the event loop for as long as the copying takes; sent piece by
piece (chunked), each piece waits its turn and the socket's pace.
"""

from __future__ import annotations

from typing import Any

from sanic import Request
from sanic.response import json_dumps

__all__ = ["PIECE", "send_json_with_items", "send_json_with_lists"]

#: bytes gathered before a piece goes out
PIECE = 256 * 1024


async def send_json_with_items(request: Request, value: dict[str, Any], key: str, items: list[bytes]) -> None:
    """Send the bytes json_dumps(value) would give, value[key] being the list of the encoded items."""
    await send_json_with_lists(request, value, {key: items})


async def send_json_with_lists(request: Request, value: dict[str, Any], lists: dict[str, list[bytes]]) -> None:
    """As send_json_with_items, for several big lists: value[key] is lists[key] for each key."""
    response = await request.respond(content_type="application/json")
    piece = bytearray(b"{")
    for position, name in enumerate(value):
        if position:
            piece += b","
        piece += f"{json_dumps(name)}:".encode()
        if name not in lists:
            piece += json_dumps(value[name]).encode()
            continue
        piece += b"["
        for index, item in enumerate(lists[name]):
            if index:
                piece += b","
            piece += item
            if len(piece) >= PIECE:
                await response.send(bytes(piece))
                piece.clear()
        piece += b"]"
    piece += b"}"
    await response.send(bytes(piece))
    await response.eof()
