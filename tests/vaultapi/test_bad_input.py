"""Bad input on every route: a clean 4xx in the Bitwarden shape, never a 5xx, never a write.

The app here refuses bodies over 64 KiB, so oversized requests are cheap to make.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.support.bwclient import BitwardenClient
from tests.vaultapi.conftest import running_api

TOKEN_PATH = "/identity/connect/token"
MAX_BODY = 64 * 1024


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[str]:
    async with running_api(database_url, max_body_size=MAX_BODY) as url:
        yield url


def assert_error_shape(reply: httpx.Response) -> None:
    """A 4xx whose body the clients can show: OAuth-style on the token endpoint, else Bitwarden's."""
    assert 400 <= reply.status_code < 500, (reply.status_code, reply.text)
    body = reply.json()
    if reply.request.url.path == TOKEN_PATH:
        assert isinstance(body["error"], str) and body["error"], body
        assert isinstance(body["error_description"], str) and body["error_description"], body
        return
    assert set(body) == {"message", "validationErrors", "object"}, body
    assert body["object"] == "error" and isinstance(body["message"], str) and body["message"], body
    errors = body["validationErrors"]
    assert errors is None or all(
        isinstance(field, str) and isinstance(messages, list) and all(isinstance(m, str) for m in messages)
        for field, messages in errors.items()), body


async def send(client: BitwardenClient, method: str, path: str, content: bytes | None,
               content_type: str | None = "application/json", *, auth: bool = True,
               headers: dict[str, str] | None = None) -> httpx.Response:
    """A raw request: the body goes out byte for byte, with whatever content type is given."""
    sent = {**(client.auth_headers if auth else client._device_headers()), **(headers or {})}
    if content_type is not None:
        sent["Content-Type"] = content_type
    return await client.http.request(method, path, content=content, headers=sent)


async def vault_bytes(client: BitwardenClient) -> tuple[bytes, bytes]:
    """What the client would see of its vault: the sync reply and the revision date, as bytes."""
    sync = await client.get("/api/sync")
    revision = await client.get("/api/accounts/revision-date")
    assert sync.status_code == revision.status_code == 200
    return sync.content, revision.content


def raw_json(value: Any) -> bytes:
    # json.dumps escapes what httpx would refuse to encode: lone surrogates, NaN
    return json.dumps(value).encode()


# ---- regressions: each of these once answered a 500 or the wrong shape ----------------------

async def test_json_nested_deeper_than_the_parser_goes_is_400(alice: BitwardenClient, events) -> None:
    before = await vault_bytes(alice)
    for path in ("/api/folders", "/api/ciphers", "/api/settings/domains"):
        reply = await send(alice, "POST", path, b"[" * 50_000)
        assert_error_shape(reply)
        nested = b'{"name": "x", "type": 1, "login": ' + b"[" * 20_000 + b"]" * 20_000 + b"}"
        assert_error_shape(await send(alice, "POST", path, nested))
    assert await vault_bytes(alice) == before
    await events.nothing()


async def test_lone_surrogate_in_a_password_hash_is_400(alice: BitwardenClient, events, db) -> None:
    before = await vault_bytes(alice)
    lone = "\ud800"
    for path, body in (
        ("/api/accounts/verify-password", {"masterPasswordHash": lone}),
        ("/api/accounts/security-stamp", {"masterPasswordHash": lone}),
        ("/api/accounts/password", {"masterPasswordHash": alice.password_hash(), "newMasterPasswordHash": lone,
                                    "key": "2.a|b|c"}),
        ("/api/folders", {"name": "x" + lone}),
    ):
        assert_error_shape(await send(alice, "POST", path, raw_json(body)))
    register = {"email": "new@example.com", "masterPasswordHash": lone, "key": "2.a|b|c", "kdf": 0,
                "kdfIterations": 600_000}
    assert_error_shape(await send(alice, "POST", "/identity/accounts/register", raw_json(register), auth=False))
    assert await db.fetchval("SELECT count(*) FROM users WHERE email = 'new@example.com'") == 0
    # a paired surrogate escape is an ordinary emoji
    emoji = await send(alice, "POST", "/api/folders", raw_json({"name": "\U0001F511"}))
    assert emoji.status_code == 200 and emoji.json()["name"] == "\U0001F511"
    await events.next()
    assert (await vault_bytes(alice))[0] != before[0]
    await events.nothing()


async def test_token_endpoint_answers_every_error_in_the_oauth_shape(alice: BitwardenClient, db) -> None:
    devices_before = await db.fetchval("SELECT count(*) FROM devices")
    form = {"grant_type": "password", "username": alice.email, "password": alice.password_hash(),
            "scope": "api offline_access", "client_id": "cli", "deviceType": "25",
            "deviceIdentifier": "fresh-device", "deviceName": "linux"}
    for changed in ({"username": "a\x00b"}, {"deviceIdentifier": "nul\x00"}, {"deviceType": "99999999"},
                    {"deviceName": "\x00"}, {"refresh_token": "\x00", "grant_type": "refresh_token"}):
        reply = await alice.http.post(TOKEN_PATH, data={**form, **changed})
        assert reply.status_code == 400, changed
        assert_error_shape(reply)
    oversized = await send(alice, "POST", TOKEN_PATH, b"grant_type=password&" + b"x" * MAX_BODY,
                           "application/x-www-form-urlencoded", auth=False)
    assert oversized.status_code == 413
    assert_error_shape(oversized)
    assert await db.fetchval("SELECT count(*) FROM devices") == devices_before
