"""Errors answered in the Bitwarden shape, and the handler that maps every failure to one.

A handler raises :class:`ApiError` (or :class:`GrantError` on the token endpoint); everything
else that can go wrong (unknown routes, oversized bodies, a database that is down) is mapped
here too, so a client always gets JSON it can show, never a bare 500 page.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from sanic import Request
from sanic.exceptions import SanicException
from sanic.response import HTTPResponse, json

from core.database import NO_PRIMARY
from core.errors import error_json

__all__ = [
    "TOKEN_PATH",
    "ApiError",
    "GrantError",
    "NotFound",
    "TooManyRequests",
    "Unauthorized",
    "error_json",
    "handle_error",
]

log = logging.getLogger(__name__)

#: the OAuth token endpoint, whose errors take the OAuth shape
TOKEN_PATH = "/identity/connect/token"


class ApiError(Exception):
    """Raised when a request cannot be served; the message is shown to the user."""

    status = 400

    def __init__(self, message: str, *, status: int | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.field = field

    def __str__(self) -> str:
        return f"{self.status} {self.message}"

    def body(self) -> dict[str, Any]:
        return error_json(self.message, self.field)


class NotFound(ApiError):
    """Raised when an id names nothing the caller owns (unknown and foreign ids look alike)."""

    status = 404

    def __init__(self, what: str = "Resource") -> None:
        super().__init__(f"{what} not found.")


class Unauthorized(ApiError):
    """Raised when the access token is missing, invalid, expired or revoked."""

    status = 401


class TooManyRequests(ApiError):
    """Raised when a client must wait before trying again; answered with Retry-After."""

    status = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class GrantError(ApiError):
    """Raised by the token endpoint; answered in the OAuth shape the clients parse."""

    def __init__(self, description: str, error: str = "invalid_grant", *, status: int | None = None) -> None:
        super().__init__(description, status=status)
        self.error = error

    def body(self) -> dict[str, Any]:
        return {
            "error": self.error,
            "error_description": self.message,
            "ErrorModel": {"Message": self.message, "Object": "error"},
        }


async def handle_error(request: Request, exception: Exception) -> HTTPResponse:
    error = _as_api_error(request, exception)
    headers = {"Retry-After": str(error.retry_after)} if isinstance(error, TooManyRequests) else None
    if request.path == TOKEN_PATH and not isinstance(error, GrantError):
        # the clients read only error/error_description from the token endpoint, whatever failed
        kind = "temporarily_unavailable" if error.status == 429 else "invalid_request"
        error = GrantError(error.message, kind, status=error.status)
    return json(error.body(), status=error.status, headers=headers)


def _as_api_error(request: Request, exception: Exception) -> ApiError:
    if isinstance(exception, ApiError):
        return exception
    if isinstance(exception, SanicException):
        # routing and protocol errors: 404, 405, 413, malformed requests
        status = exception.status_code if 400 <= exception.status_code < 600 else 400
        return ApiError(str(exception) or "Bad request.", status=status)
    if isinstance(exception, asyncpg.DataError):
        # values PostgreSQL cannot hold: NUL characters, numbers out of a column's range
        return ApiError("The request holds a value that cannot be stored.")
    if isinstance(exception, asyncpg.ForeignKeyViolationError):
        # what the request names was deleted by another request while this one ran
        return ApiError("The request names something that no longer exists.")
    if isinstance(exception, NO_PRIMARY):
        # down, restarting, read-only, or a failover under way: the client tries again
        log.error("database unavailable: %s", exception)
        return ApiError("The service is temporarily unavailable.", status=503)
    log.exception("unexpected error on %s %s", request.method, request.path, exc_info=exception)
    return ApiError("An unexpected error occurred.", status=500)
