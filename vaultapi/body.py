"""Typed, case-insensitive access to a JSON request body, and the EncString check.

The clients send camelCase, some older ones PascalCase; ASP.NET binds either, so lookups here
ignore case. Every accessor raises a 400 :class:`ApiError` naming the field when the value is
missing or of the wrong type.

Bodies are small (vaultapi.body_limits caps them per route) and parsed in one call, except the
import's, which is read in slices so that the other requests keep their turns.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from typing import Any

from sanic import Request

from vaultapi import body_limits
from vaultapi.errors import ApiError

__all__ = ["Body", "check_enc_string", "is_email", "is_enc_string", "parse_uuid"]

#: Bitwarden's limit of an email address
MAX_EMAIL_LENGTH = 256

_MISSING = object()
#: a JSON escape of a UTF-16 surrogate: paired it is an emoji, alone it is no text at all
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE_ESCAPE_TEXT = re.compile(r"\\u[dD][89a-fA-F]")

# ---- EncStrings: "<type>.<base64>|<base64>|..." ----------------------------------------------
# As the Bitwarden server's EncryptedStringAttribute (src/Core/Utilities/EncryptedStringAttribute.cs)
# checks them: the type, as a number or its enum name, fixes how many |-separated pieces follow;
# each piece is standard base64 whose length is a multiple of 4, the bits under its padding not
# checked. Without a type, three pieces are the old AES-128 shape and anything else must be two.

#: EncryptionType -> pieces (src/Core/Enums/EncryptionType.cs)
_ENC_PIECES = {0: 2, 1: 3, 2: 3, 3: 1, 4: 1, 5: 2, 6: 2, 7: 1}
_ENC_NAMES = {
    "AesCbc256_B64": 0, "AesCbc128_HmacSha256_B64": 1, "AesCbc256_HmacSha256_B64": 2,
    "Rsa2048_OaepSha256_B64": 3, "Rsa2048_OaepSha1_B64": 4, "Rsa2048_OaepSha256_HmacSha256_B64": 5,
    "Rsa2048_OaepSha1_HmacSha256_B64": 6, "XChaCha20Poly1305_B64": 7,
}
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


def is_enc_string(text: str) -> bool:
    header, dot, rest = text.partition(".")
    if not dot:
        pieces, rest = (3 if text.count("|") == 2 else 2), text
    elif header.isascii() and header.isdigit():
        # at most three digits: the type is a byte, and int() of a long digit string is costly
        pieces = _ENC_PIECES.get(int(header), 0) if len(header) <= 3 else 0
    else:
        pieces = _ENC_PIECES.get(_ENC_NAMES.get(header, -1), 0)
    parts = rest.split("|", pieces)
    return pieces > 0 and len(parts) == pieces and all(part and _BASE64.fullmatch(part) for part in parts)


def check_enc_string(value: Any, field: str, max_length: int, *, required: bool = False) -> str | None:
    """The value when it is an EncString no longer than max_length, else a 400 naming field."""
    if value is None:
        if required:
            raise ApiError(f"The {field} field is required.", field=field)
        return None
    if not isinstance(value, str):
        raise ApiError(f"{field} is not a valid encrypted string.", field=field)
    if required and not value:
        raise ApiError(f"The {field} field is required.", field=field)
    # the length first: it is cheap, and a huge value is not worth scanning
    if len(value) > max_length:
        raise ApiError(
            f"The field {field} exceeds the maximum encrypted value length of {max_length} characters.", field=field)
    if not is_enc_string(value):
        raise ApiError(f"{field} is not a valid encrypted string.", field=field)
    return value


def is_email(text: str) -> bool:
    """An address as Bitwarden accepts one: an @, no spaces, at most 256 characters."""
    return "@" in text and len(text) <= MAX_EMAIL_LENGTH and not any(c.isspace() for c in text)


def email_field(body: Body, field: str) -> str:
    """A required address, lowercased, as an account or a two-step provider stores it."""
    address = body.str(field, required=True, max_length=MAX_EMAIL_LENGTH).strip().lower()
    if not is_email(address):
        raise ApiError(f"The {field} field is not a valid e-mail address.", field=field)
    return address


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
    def of(cls, request: Request) -> Body:
        return cls.parse(request.body or b"null")

    @classmethod
    def parse(cls, body: bytes) -> Body:
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

    @classmethod
    async def receive(cls, request: Request) -> Body:
        """The body of a route that takes megabytes (the import), parsed in slices."""
        await request.receive_body()
        # joining the chunks and decoding them are each a copy of the whole: one per turn
        await asyncio.sleep(0)
        return await cls.parse_paced(request.body or b"null")

    @classmethod
    async def parse_paced(cls, body: bytes) -> Body:
        """As :meth:`parse`, for a body of megabytes: one top-level entry or one array element per
        step, letting other requests run between steps. One entry may be no larger than a whole
        body of an ordinary route (body_limits.VAULT_BODY), so no single step is long."""
        try:
            text = body.decode(json.detect_encoding(body))
        except (UnicodeDecodeError, LookupError):
            raise ApiError("The request body is not valid JSON.") from None
        return cls(await _PacedReader(text).read_object())

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

    def enc_string(self, name: str, *, max_length: int, required: bool = False) -> str | None:
        """An EncString field (vault data the server cannot read), in Bitwarden's shape and length."""
        return check_enc_string(self._value(name, False), name, max_length, required=required)

    def object(self, name: str, *, required: bool = False) -> Body | None:
        value = self._of_type(name, required, dict, "an object")
        return None if value is None else Body(value)

    def list(self, name: str, *, required: bool = False) -> list[Any] | None:
        return self._of_type(name, required, list, "a list")

    def objects(self, name: str, *, max_count: int | None = None) -> list[Body]:
        """The entries of an optional list of objects, each checked; more than max_count is a 400."""
        values = self.list(name) or []
        if max_count is not None and len(values) > max_count:
            raise ApiError(f"{name} may hold at most {max_count} entries.", field=name)
        if not all(isinstance(value, dict) for value in values):
            raise ApiError(f"Every entry of {name} must be an object.", field=name)
        return [Body(value) for value in values]

    def uuid_list(self, name: str, *, max_count: int | None = None) -> list[uuid.UUID]:
        values = self.list(name, required=True) or []
        if max_count is not None and len(values) > max_count:
            raise ApiError(f"{name} may hold at most {max_count} entries.", field=name)
        return [parse_uuid(value, name) for value in values]


class _PacedReader:
    """Reads one JSON object from text in steps, each bounded by body_limits.VAULT_BODY characters.

    Arrays directly under the object are read element by element; every other value is one
    step. A step decodes a window of the text, widened while the value runs past its end, so
    no step decodes more than the bound however large the whole body is.
    """

    _SPACE = re.compile(r"[ \t\n\r]*")
    _decoder = json.JSONDecoder()

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.window = 4096
        self.pacer = body_limits.Pacer()

    async def read_object(self) -> dict[str, Any]:
        first = self._next()
        if first != "{":
            raise _invalid() if not first else ApiError("The request body must be a JSON object.")
        self.pos += 1
        data: dict[str, Any] = {}
        if self._next() == "}":
            self.pos += 1
        else:
            while True:
                key = self._value()
                if not isinstance(key, str) or self._next() != ":":
                    raise _invalid()
                self.pos += 1
                data[key] = await self._array() if self._next() == "[" else self._value()
                await self.pacer.pace()
                if not self._separator("}"):
                    break
        if self._next():
            raise _invalid()
        return data

    async def _array(self) -> list[Any]:
        self.pos += 1
        items: list[Any] = []
        if self._next() == "]":
            self.pos += 1
            return items
        while True:
            items.append(self._value())
            await self.pacer.pace()
            if not self._separator("]"):
                return items

    def _next(self) -> str:
        """The next character that is not JSON whitespace ("" at the end)."""
        self.pos = self._SPACE.match(self.text, self.pos).end()
        return self.text[self.pos:self.pos + 1]

    def _separator(self, closing: str) -> bool:
        """True after a comma (more follows), False after the closing bracket."""
        found = self._next()
        self.pos += 1
        if found not in (",", closing):
            raise _invalid()
        return found == ","

    def _value(self) -> Any:
        self._next()
        start, rest = self.pos, len(self.text) - self.pos
        # neighbouring entries are alike in size: start from the last one's window
        window = min(self.window, rest)
        while True:
            chunk = self.text[start:start + window]
            whole = window >= rest
            try:
                value, end = self._decoder.raw_decode(chunk)
            except json.JSONDecodeError as error:
                # the window may have cut the value: an open string, or trouble at the very end
                cut = error.pos >= len(chunk) - 8 or error.msg.startswith("Unterminated string")
                if whole or not cut:
                    raise _invalid() from None
            except RecursionError:
                raise _invalid() from None
            else:
                # a number cut at its "." or "e" reads short, ending within 2 of the window's end
                if whole or end < len(chunk) - 2:
                    break
            if window >= body_limits.VAULT_BODY:
                raise ApiError("An entry of the request body is too large.")
            window = min(window * 2, body_limits.VAULT_BODY, rest)
        self.window = max(4096, min(2 * end, body_limits.VAULT_BODY))
        if _SURROGATE_ESCAPE_TEXT.search(chunk, 0, end):
            try:
                json.dumps(value, ensure_ascii=False).encode()
            except ValueError:
                raise _invalid() from None
        self.pos = start + end
        return value


def _invalid() -> ApiError:
    return ApiError("The request body is not valid JSON.")
