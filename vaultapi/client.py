"""Who is on the other end of a request: the one place that decides a client's address."""

from __future__ import annotations

from sanic import Request

__all__ = ["client_address"]


def client_address(request: Request) -> str:
    """The client's address as seen: the proxy-forwarded one when Sanic was told to trust it."""
    return request.remote_addr or request.ip
