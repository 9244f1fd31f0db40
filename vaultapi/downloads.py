"""File downloads through short-lived signed URLs, which any API replica verifies.

The clients fetch a file from a URL the API hands them, without their access token. The URL's
path is the file's key (``/attachments/<item>/<attachment>``, ``/sends/<send>/<file>``) and its
``token`` a JWT signed with the API's token keys (core/keyring.py), for this one key, valid for
URL_LIFETIME seconds; every replica holds the same keys, so whichever replica the proxy picks
verifies it. The file is streamed from the store chunk by chunk.
"""

from __future__ import annotations

from sanic import Request
from sanic.response import HTTPResponse
from urllib.parse import quote

from core.tokens import TokenError
from vaultapi.errors import NotFound
from vaultapi.storage import FileMissing

__all__ = ["URL_LIFETIME", "download_url", "send_file"]

#: seconds a download URL stays valid: the clients fetch it at once
URL_LIFETIME = 300


def issuer_name(domain: str) -> str:
    """The issuer of download tokens: never an access token's, so neither passes for the other."""
    return f"{domain.rstrip('/')}|file"


def download_url(request: Request, key: str) -> str:
    token = request.app.ctx.file_issuer.issue({"sub": key})
    return f"{request.app.ctx.config.domain.rstrip('/')}/{key}?token={quote(token)}"


async def send_file(request: Request, key: str) -> HTTPResponse | None:
    """Stream the file under key to the client, when the request's token was signed for it."""
    token = request.args.get("token", "")
    try:
        claims = await request.app.ctx.file_verifier.verify(token)
    except TokenError:
        raise NotFound("File") from None
    if claims.get("sub") != key:
        raise NotFound("File")
    store = request.app.ctx.store
    try:
        size = await store.size(key)
    except FileMissing:
        raise NotFound("File") from None
    response = await request.respond(headers={"Content-Length": str(size), "Cache-Control": "no-store"},
                                     content_type="application/octet-stream")
    async for chunk in store.get(key):
        await response.send(chunk)
    await response.eof()
    return None
