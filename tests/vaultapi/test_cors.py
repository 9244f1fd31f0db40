"""CORS: the origins the official clients run in may call the API from a browser; no other may."""

from __future__ import annotations

import httpx
import pytest

from tests.support.bwclient import BitwardenClient
from tests.vaultapi.conftest import running_api

#: what a browser extension or the web vault asks before its token request (custom headers)
TOKEN_PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "bitwarden-client-name,bitwarden-client-version,content-type,device-type",
}

CLIENT_ORIGINS = [
    "https://vault.test",  # the web vault at DOMAIN
    "chrome-extension://nngceckbapebfimnlniiiahkandclblb",  # Chrome Web Store
    "chrome-extension://jbkfoedolllekgbhcbcoahefnbanhhlh",  # Edge Add-ons
    "moz-extension://0c8e0a55-6d5f-4c6f-9f5e-8e1b2c3d4e5f",  # Firefox: a per-install UUID
    "safari-web-extension://8A3C1F0E-5B2D-4E6F-9A1B-2C3D4E5F6A7B",
    "file://",  # the Safari app extension
    "bw-desktop-file://bundle",  # the desktop app
]

FOREIGN_ORIGINS = [
    "https://evil.example",
    "https://vault.test.evil.example",
    "http://vault.test",  # another scheme is another origin
    "https://vault.test:8443",
    "null",
    "chrome-extension://not-an-extension-id",
    "moz-extension://evil.example",
    "chrome-extension://nngceckbapebfimnlniiiahkandclblb.evil.example",
    "*",
]


@pytest.mark.parametrize("origin", CLIENT_ORIGINS)
async def test_preflight_from_a_client_origin_allows_the_token_request(api: str, origin: str) -> None:
    async with httpx.AsyncClient(base_url=api) as http:
        reply = await http.options("/identity/connect/token", headers={"Origin": origin, **TOKEN_PREFLIGHT})
    assert reply.status_code == 204
    assert reply.headers["access-control-allow-origin"] == origin
    assert reply.headers["access-control-allow-credentials"] == "true"
    assert "POST" in reply.headers["access-control-allow-methods"]
    allowed = {h.strip().lower() for h in reply.headers["access-control-allow-headers"].split(",")}
    assert set(TOKEN_PREFLIGHT["Access-Control-Request-Headers"].split(",")) <= allowed
    assert "vary" in reply.headers and "origin" in reply.headers["vary"].lower()


async def test_preflight_allows_every_method_and_header_the_clients_use(api: str) -> None:
    async with httpx.AsyncClient(base_url=api) as http:
        reply = await http.options("/api/ciphers/00000000-0000-0000-0000-000000000000", headers={
            "Origin": "https://vault.test", "Access-Control-Request-Method": "DELETE",
            "Access-Control-Request-Headers": "authorization,content-type"})
    assert reply.status_code == 204
    methods = {m.strip() for m in reply.headers["access-control-allow-methods"].split(",")}
    assert {"GET", "POST", "PUT", "DELETE"} <= methods
    allowed = {h.strip().lower() for h in reply.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type", "accept", "device-type", "bitwarden-client-name",
            "bitwarden-client-version", "device-identifier", "cache-control", "pragma", "auth-email",
            "x-request-email", "x-device-identifier"} <= allowed


@pytest.mark.parametrize("origin", FOREIGN_ORIGINS)
async def test_preflight_from_any_other_origin_allows_nothing(api: str, origin: str) -> None:
    async with httpx.AsyncClient(base_url=api) as http:
        reply = await http.options("/identity/connect/token", headers={"Origin": origin, **TOKEN_PREFLIGHT})
        plain = await http.get("/api/config", headers={"Origin": origin})
    for response in (reply, plain):
        assert "access-control-allow-origin" not in response.headers, response.headers
        assert "access-control-allow-credentials" not in response.headers
        assert "access-control-allow-methods" not in response.headers
    assert plain.status_code == 200


async def test_a_call_from_a_client_origin_may_read_the_answer(alice: BitwardenClient) -> None:
    origin = "chrome-extension://nngceckbapebfimnlniiiahkandclblb"
    reply = await alice.get("/api/sync", headers={"Origin": origin})
    assert reply.status_code == 200
    assert reply.headers["access-control-allow-origin"] == origin
    assert reply.headers["access-control-allow-credentials"] == "true"
    assert "origin" in reply.headers["vary"].lower()
    refused = await alice.http.get("/api/sync", headers={"Origin": "https://vault.test"})
    assert refused.status_code == 401
    # the browser must see an error as one, not as a network failure
    assert refused.headers["access-control-allow-origin"] == "https://vault.test"


async def test_answers_vary_by_origin_even_without_one(api: str) -> None:
    async with httpx.AsyncClient(base_url=api) as http:
        reply = await http.get("/api/config")
    assert "access-control-allow-origin" not in reply.headers
    assert "origin" in reply.headers["vary"].lower()


async def test_an_options_request_that_is_no_preflight_is_not_answered_as_one(api: str) -> None:
    async with httpx.AsyncClient(base_url=api) as http:
        reply = await http.options("/api/config", headers={"Origin": "https://vault.test"})
    assert reply.status_code == 405
    assert "access-control-allow-methods" not in reply.headers


async def test_configured_origins_are_allowed_too(database_url: str) -> None:
    web_vault = "https://web.example.com:8443"
    async with running_api(database_url, cors_allowed_origins=(web_vault,)) as url, \
            httpx.AsyncClient(base_url=url) as http:
        extra = await http.options("/api/sync", headers={"Origin": web_vault, **TOKEN_PREFLIGHT})
        domain = await http.get("/api/config", headers={"Origin": "https://vault.test"})
        other = await http.get("/api/config", headers={"Origin": "https://web.example.com"})
    assert extra.headers["access-control-allow-origin"] == web_vault
    assert domain.headers["access-control-allow-origin"] == "https://vault.test"
    assert "access-control-allow-origin" not in other.headers

