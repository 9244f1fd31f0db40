"""Headers on every HTTP answer of the API and the hub: security headers, and no caching.

Both answer JSON (or plain text) to programs; nothing either sends is a page to render, frame or
cache. Tokens, keys and vault data pass through them, so no browser or proxy may keep a copy
(Bitwarden's token endpoint sends the same Cache-Control and Pragma). The values follow what
Bitwarden's servers and Vaultwarden send, tightened for servers that serve no web vault: DENY and
``frame-ancestors 'none'`` instead of SAMEORIGIN, no script, style or image sources at all.
X-XSS-Protection is not sent: browsers dropped the filter, and where one remains it can be abused
to leak page content.
"""

from __future__ import annotations

from sanic import Request, Sanic
from sanic.response import BaseHTTPResponse

__all__ = ["NO_STORE", "SECURITY_HEADERS", "add_headers", "install"]

SECURITY_HEADERS = {
    # answers are never interpreted as anything but their declared type (JSON), e.g. a script
    "X-Content-Type-Options": "nosniff",
    # no page may frame an answer; frame-ancestors says the same to current browsers
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    # a link followed from an answer rendered by mistake does not leak our URLs elsewhere
    "Referrer-Policy": "same-origin",
}

#: Pragma for HTTP/1.0 caches, which ignore Cache-Control
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def install(app: Sanic) -> None:
    """Add the headers to every answer of the app, errors and preflights included."""
    app.on_response(_add_headers)


def add_headers(response: BaseHTTPResponse) -> None:
    response.headers.update(SECURITY_HEADERS)
    if "cache-control" not in response.headers:
        response.headers.update(NO_STORE)


async def _add_headers(request: Request, response: BaseHTTPResponse) -> None:
    add_headers(response)
