"""CORS: which browser origins may call the API and read its answers.

The official clients that run in a browser engine call the API cross-origin from these origins:

- the web vault, at DOMAIN (or at a CORS_ALLOWED_ORIGINS origin when it is hosted elsewhere);
- the browser extensions, ``chrome-extension://<id>`` (Chrome, Edge, Opera, ...),
  ``moz-extension://<uuid>`` (Firefox) and ``safari-web-extension://<uuid>`` (Safari); Firefox and
  Safari pick the UUID per installation, so the shape of the origin is checked, not a list;
- the Safari app extension, ``file://``, and the desktop app, ``bw-desktop-file://bundle``: the two
  fixed origins Bitwarden's own server allows besides the web vault.

An allowed origin is echoed back with ``Access-Control-Allow-Credentials: true``, since the apps
fetch with ``credentials: "include"``; any other origin gets no CORS header at all, so a browser
will not let its page read the answer. Never ``*``, never an origin merely because it was sent.
Allowing every extension is safe here because the API sets no cookies: a request carries the
user's access token only if the calling code already holds it, and an extension with host
permissions bypasses CORS anyway.
"""

from __future__ import annotations

import re

from sanic import Request, Sanic
from sanic.response import BaseHTTPResponse, HTTPResponse, empty

from core.config import Config

__all__ = ["ALLOWED_HEADERS", "ALLOWED_METHODS", "PREFLIGHT_MAX_AGE", "allowed_origin", "install"]

ALLOWED_METHODS = ("GET", "POST", "PUT", "DELETE")

#: What the clients send: the API service's own headers, the token request's Auth-Email, the
#: known-device check's pair, and SignalR's on a negotiate call.
ALLOWED_HEADERS = (
    "Accept",
    "Authorization",
    "Content-Type",
    "Cache-Control",
    "Pragma",
    "Device-Type",
    "Device-Identifier",
    "Bitwarden-Client-Name",
    "Bitwarden-Client-Version",
    "Is-Prerelease",
    "Auth-Email",
    "X-Request-Email",
    "X-Device-Identifier",
    "X-Requested-With",
    "X-SignalR-User-Agent",
)

#: seconds a browser may reuse a preflight's answer (Chromium caps it at 7200)
PREFLIGHT_MAX_AGE = 3600

_APP_ORIGINS = frozenset({"file://", "bw-desktop-file://bundle"})

_UUID = "[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
# a Chromium extension id is 32 letters from a to p
_EXTENSION_ORIGIN = re.compile(rf"chrome-extension://[a-p]{{32}}|moz-extension://{_UUID}|safari-web-extension://{_UUID}")


def allowed_origin(origin: str, config: Config) -> bool:
    return (
        origin == config.domain_origin
        or origin in config.cors_allowed_origins
        or origin in _APP_ORIGINS
        or _EXTENSION_ORIGIN.fullmatch(origin) is not None
    )


def install(app: Sanic) -> None:
    """Answer preflights and mark the answers to allowed origins, for every route of the app."""
    # app-wide request middleware also runs when no route takes OPTIONS, before the 405
    app.on_request(_answer_preflight)
    app.on_response(_allow_origin)


async def _answer_preflight(request: Request) -> HTTPResponse | None:
    if request.method != "OPTIONS" or "access-control-request-method" not in request.headers:
        return None
    response = empty(status=204)
    if allowed_origin(request.headers.get("origin", ""), request.app.ctx.config):
        response.headers.update({
            "Access-Control-Allow-Methods": ", ".join(ALLOWED_METHODS),
            "Access-Control-Allow-Headers": ", ".join(ALLOWED_HEADERS),
            "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE),
        })
    return response


async def _allow_origin(request: Request, response: BaseHTTPResponse) -> None:
    # the answer depends on Origin: a shared cache must not hand one origin's answer to another
    response.headers.add("Vary", "Origin")
    origin = request.headers.get("origin")
    if origin and allowed_origin(origin, request.app.ctx.config):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Credentials"] = "true"
