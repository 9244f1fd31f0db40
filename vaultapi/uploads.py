"""File uploads: a multipart/form-data body read part by part as it arrives, never whole.

The clients upload a file as a form whose file field is named ``data`` (its file name the
encrypted name) and, on the legacy route, a ``key`` field before it. `StreamedForm` hands out the
parts in order; a file part's bytes go straight to the file store in chunks, so memory per upload
stays within the store's chunk whatever the file's size. The route sets the body's limit before
the first byte is read (`limit_body`): past it the connection is refused with a 413.
"""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator
from dataclasses import dataclass

from python_multipart.multipart import MultipartParser, parse_options_header
from sanic import Request

from vaultapi.errors import ApiError

__all__ = ["FormPart", "StreamedForm", "limit_body"]

#: bytes of a part's headers, and of a plain field's value (an EncString key): far more than any client sends
MAX_FIELD = 16 * 1024


def limit_body(request: Request, limit: int) -> None:
    """Refuse the body past limit bytes: at once from its Content-Length, else chunk by chunk."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise ApiError("The upload is larger than allowed.", status=413)
    request.stream.request_max_size = limit


@dataclass
class FormPart:
    name: str
    #: the file name a file part names (the encrypted name), else None
    filename: str | None


class StreamedForm:
    """The parts of a multipart/form-data request body, in order, as it arrives."""

    def __init__(self, request: Request) -> None:
        kind, options = parse_options_header(request.headers.get("content-type", ""))
        boundary = options.get(b"boundary")
        if kind != b"multipart/form-data" or not boundary or len(boundary) > 200:
            raise ApiError("Send the file as multipart/form-data.", status=415)
        self._request = request
        self._events: collections.deque[tuple[str, object]] = collections.deque()
        self._headers: list[tuple[bytes, bytes]] = []
        self._header_bytes = 0
        self._field = b""
        self._ended = False
        self._parser = MultipartParser(boundary, {
            "on_part_begin": self._begin,
            "on_header_field": lambda data, start, end: self._header_piece(data[start:end], True),
            "on_header_value": lambda data, start, end: self._header_piece(data[start:end], False),
            "on_headers_finished": self._headers_done,
            # a view of the piece read: the bytes are copied once, into the store's chunk
            "on_part_data": lambda data, start, end: self._events.append(("data", memoryview(data)[start:end])),
            "on_part_end": lambda: self._events.append(("end", None)),
            "on_end": self._end,
        })

    # parser callbacks: each queues what happened, read by the coroutines below

    def _begin(self) -> None:
        self._headers, self._header_bytes = [], 0

    def _header_piece(self, piece: bytes, is_field: bool) -> None:
        self._header_bytes += len(piece)
        if self._header_bytes > MAX_FIELD:
            raise ApiError("A part of the form has headers too large.")
        if is_field and (not self._headers or self._headers[-1][1]):
            self._headers.append((piece, b""))
        elif is_field:
            self._headers[-1] = (self._headers[-1][0] + piece, b"")
        else:
            self._headers[-1] = (self._headers[-1][0], self._headers[-1][1] + piece)

    def _headers_done(self) -> None:
        disposition = next((value for field, value in self._headers
                            if field.strip().lower() == b"content-disposition"), b"")
        _, options = parse_options_header(disposition)
        name, filename = options.get(b"name"), options.get(b"filename")
        self._events.append(("part", FormPart(
            (name or b"").decode("utf-8", "replace"),
            filename.decode("utf-8", "replace") if filename is not None else None)))

    def _end(self) -> None:
        self._ended = True

    async def _next(self) -> tuple[str, object] | None:
        while not self._events:
            if self._ended:
                return None
            chunk = await self._request.stream.read()
            if chunk is None:
                # the body ended: a form without its closing boundary was cut short
                if not self._ended:
                    raise ApiError("The upload ended before the form did.")
                return None
            try:
                self._parser.write(chunk)
            except ApiError:
                raise
            except Exception:
                raise ApiError("The form is not valid multipart/form-data.") from None
        return self._events.popleft()

    async def next_part(self) -> FormPart | None:
        """The next part, skipping what is left of the current one; None after the last."""
        while (event := await self._next()) is not None:
            if event[0] == "part":
                assert isinstance(event[1], FormPart)
                return event[1]
        return None

    async def finish(self) -> None:
        """Read the rest of the body (the form's end), so the connection can serve the answer."""
        while await self.next_part() is not None:
            pass
        while await self._request.stream.read() is not None:
            pass

    async def data(self) -> AsyncIterator[memoryview]:
        """The current part's bytes, in the pieces they arrived in."""
        while (event := await self._next()) is not None:
            if event[0] == "end":
                return
            if event[0] == "data":
                assert isinstance(event[1], memoryview)
                yield event[1]
        raise ApiError("The upload ended before the form did.")

    async def field(self) -> str:
        """The current part as a short text value."""
        value = bytearray()
        async for piece in self.data():
            value += piece
            if len(value) > MAX_FIELD:
                raise ApiError("A field of the form is too long.")
        return value.decode("utf-8", "replace")
