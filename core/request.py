"""The request class under both apps: a URL that cannot be parsed is a plain 400.

Sanic refuses such a URL (a control byte in the target, for one) with an error that quotes it,
then fails again making the stand-in request it answers errors with, from the same URL, and logs
a traceback quoting it: on the hub, a URL carries the client's token. Here the refusal names no
URL, and the stand-in gets a URL that parses.
"""

from __future__ import annotations

from typing import Any

from sanic import Request
from sanic.exceptions import BadRequest, URITooLong

__all__ = ["QuietRequest"]

#: the method of the stand-in request Sanic makes to answer an error (http1.create_empty_request)
_STAND_IN = "NONE"


class QuietRequest(Request):
    def __init__(self, url_bytes: bytes, *args: Any, **kwargs: Any) -> None:
        try:
            super().__init__(url_bytes, *args, **kwargs)
        except (BadRequest, URITooLong) as error:
            if kwargs.get("method") == _STAND_IN:
                super().__init__(b"/", *args, **kwargs)
            elif isinstance(error, BadRequest):
                raise BadRequest("Bad URL") from None
            else:
                raise
