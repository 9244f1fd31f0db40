"""WebSocket framing of the hub's outgoing messages (RFC 6455 §5.2), made once per message.

A server's frames are never masked, and the hub negotiates no extension (Sanic's upgrade offers
no permessage-deflate), so every recipient of a message gets the very same bytes: the whole
frame is built once and written to each socket's transport as it is. Pure: no I/O here.

A SignalR payload in the JSON protocol is text (a ``str``: a Text frame), in MessagePack it is
binary (``bytes``: a Binary frame); each message is one final, unfragmented frame.
"""

from __future__ import annotations

import struct

__all__ = ["BINARY", "TEXT", "frame"]

#: First header byte: FIN set, no RSV bit, and the opcode.
TEXT = 0x81
BINARY = 0x82

_MEDIUM = struct.Struct("!BBH")
_LARGE = struct.Struct("!BBQ")


def frame(payload: bytes | str) -> bytes:
    """The complete, unmasked frame that carries ``payload`` as one message."""
    if isinstance(payload, str):
        data, first = payload.encode(), TEXT
    else:
        data, first = payload, BINARY
    length = len(data)
    if length < 126:
        return bytes((first, length)) + data
    if length < 65536:
        return _MEDIUM.pack(first, 126, length) + data
    return _LARGE.pack(first, 127, length) + data
