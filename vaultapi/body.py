"""Typed, case-insensitive access to a JSON request body.

The clients send camelCase, some older ones PascalCase; ASP.NET binds either, so lookups here
ignore case. Every accessor raises a 400 :class:`ApiError` naming the field when the value is
missing or of the wrong type.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

from sanic import Request

from vaultapi.errors import ApiError

__all__ = ["MANAGEMENT_BODY_SIZE", "Body", "is_email", "parse_uuid"]

#: The largest body of the organization, member and collection routes: names, keys and a few
#: thousand ids at most.
MANAGEMENT_BODY_SIZE = 1024 * 1024
#: Bitwarden's limit of an email address
MAX_EMAIL_LENGTH = 256

_MISSING = object()
#: a JSON escape of a UTF-16 surrogate: paired it is an emoji, alone it is no text at all
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def is_email(text: str) -> bool:
    """An address as Bitwarden accepts one: an @, no spaces, at most 256 characters."""
    return "@" in text and len(text) <= MAX_EMAIL_LENGTH and not any(c.isspace() for c in text)


def parse_uuid(value: Any, field: str) -> uuid.UUID:
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise ApiError(f"{field} is not a valid id.", field=field)


class Body:
    """A JSON object from a request, read field by field."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.raw = data
        self._lower = {key.lower(): value for key, value in data.items()}

    @classmethod
    def of(cls, request: Request, *, max_size: int | None = None) -> Body:
        """The request's JSON object; max_size: a route's own limit, below the app's (a 413)."""
        if max_size is not None and len(request.body or b"") > max_size:
            raise ApiError("The request body is too large.", status=413)
        body = request.body or b"null"
        try:
            data = json.loads(body)
            if _SURROGATE_ESCAPE.search(body):
                # a lone surrogate can be neither stored nor hashed: refuse it here, not deep inside
                json.dumps(data, ensure_ascii=False).encode()
        except (ValueError, RecursionError):
            # ValueError covers bad UTF-8 and lone surrogates; RecursionError, absurd nesting
            raise ApiError("The request body is not valid JSON.") from None
        if not isinstance(data, dict):
            raise ApiError("The request body must be a JSON object.")
        return cls(data)

    def has(self, name: str) -> bool:
        return name.lower() in self._lower

    def get(self, name: str, default: Any = None) -> Any:
        return self._lower.get(name.lower(), default)

    def _value(self, name: str, required: bool) -> Any:
        value = self._lower.get(name.lower(), _MISSING)
        if value is _MISSING or value is None:
            if required:
                raise ApiError(f"The {name} field is required.", field=name)
            return None
        return value

    def _of_type(self, name: str, required: bool, kind: type, described: str) -> Any:
        value = self._value(name, required)
        if value is not None and not isinstance(value, kind):
            raise ApiError(f"{name} must be {described}.", field=name)
        return value

    def str(self, name: str, *, required: bool = False, max_length: int = 100_000) -> str | None:
        value = self._of_type(name, required, str, "a string")
        if value is None:
            return None
        if required and not value.strip():
            raise ApiError(f"The {name} field is required.", field=name)
        if len(value) > max_length:
            raise ApiError(f"{name} is longer than {max_length} characters.", field=name)
        return value

    def email(self, name: str, *, required: bool = False) -> str | None:
        """An email address, trimmed."""
        value = self.str(name, required=required, max_length=MAX_EMAIL_LENGTH + 100)
        if value is None:
            return None
        if not is_email(value.strip()):
            raise ApiError(f"The {name} field is not a valid e-mail address.", field=name)
        return value.strip()

    def int(self, name: str, *, required: bool = False, default: int | None = None) -> int | None:
        value = self._value(name, required)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise ApiError(f"{name} must be an integer.", field=name)
        return value

    def bool(self, name: str, *, default: bool = False) -> bool:
        value = self._of_type(name, False, bool, "true or false")
        return default if value is None else value

    def uuid(self, name: str, *, required: bool = False) -> uuid.UUID | None:
        value = self._value(name, required)
        return None if value is None else parse_uuid(value, name)

    def object(self, name: str, *, required: bool = False) -> Body | None:
        value = self._of_type(name, required, dict, "an object")
        return None if value is None else Body(value)

    def list(self, name: str, *, required: bool = False) -> list[Any] | None:
        return self._of_type(name, required, list, "a list")

    def objects(self, name: str) -> Iterator[Body]:
        """The entries of an optional list of objects, each checked as it is reached."""
        for value in self.list(name) or []:
            if not isinstance(value, dict):
                raise ApiError(f"Every entry of {name} must be an object.", field=name)
            yield Body(value)

    def uuid_list(self, name: str) -> list[uuid.UUID]:
        values = self.list(name, required=True) or []
        return [parse_uuid(value, name) for value in values]
