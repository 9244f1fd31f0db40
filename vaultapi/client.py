"""Who is on the other end of a request: the one place in the API that decides a client's address."""

from __future__ import annotations

from sanic import Request

from core import client_address as addresses

__all__ = ["client_address"]


def client_address(request: Request) -> str:
    """The connection's own address, or the one a trusted proxy passed in IP_HEADER (core.client_address)."""
    return addresses.client_address(request.ip, request.headers, request.app.ctx.config)
