"""Response headers: security headers on every answer, and no caching of tokens and keys."""

from __future__ import annotations

import httpx
import pytest

from tests.support.bwclient import BitwardenClient

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
}


def assert_secure(response: httpx.Response) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (response.request.url, name, response.headers)


def assert_not_stored(response: httpx.Response) -> None:
    assert response.headers.get("cache-control") == "no-store", (response.request.url, response.headers)
    assert response.headers.get("pragma") == "no-cache", (response.request.url, response.headers)


async def test_token_reply_is_neither_cached_nor_framed(alice: BitwardenClient) -> None:
    refreshed = await alice.refresh()
    assert refreshed.status_code == 200 and refreshed.json()["refresh_token"]
    assert_not_stored(refreshed)
    reply = await alice.request_token()
    assert reply.status_code == 200 and reply.json()["access_token"]
    assert_not_stored(reply)
    assert_secure(reply)
    refused = await alice.request_token(password="not it")
    assert refused.status_code == 400
    assert_not_stored(refused)
    assert_secure(refused)


async def test_replies_carrying_keys_or_vault_data_are_not_stored(alice: BitwardenClient) -> None:
    for path in ("/api/sync", "/api/accounts/profile", "/api/folders", "/api/ciphers"):
        reply = await alice.get(path)
        assert reply.status_code == 200, path
        assert_not_stored(reply)
        assert_secure(reply)


async def test_registration_token_reply_is_not_stored(api: str) -> None:
    async with httpx.AsyncClient(base_url=api) as http:
        reply = await http.post("/identity/accounts/register/send-verification-email",
                                json={"email": "new@example.com", "name": "New"})
    assert reply.status_code == 200 and reply.json().count(".") == 2
    assert_not_stored(reply)
    assert_secure(reply)


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/api/config", 200),
    ("GET", "/alive", 200),
    ("POST", "/identity/accounts/prelogin/password", 400),
    ("GET", "/api/sync", 401),
    ("GET", "/api/nothing-here", 404),
    ("DELETE", "/api/config", 405),
    ("POST", "/notifications/hub/negotiate", 401),
])
async def test_every_answer_has_the_security_headers(api: str, method: str, path: str, status: int) -> None:
    async with httpx.AsyncClient(base_url=api) as http:
        reply = await http.request(method, path)
    assert reply.status_code == status
    assert_secure(reply)

