"""Request bodies: each route takes what its callers need, refused before the rest arrives.

A body over a route's limit is answered 413 from its Content-Length (or from the chunks that
came so far), so the tests below send only the start of a huge body and expect the answer while
the rest is still unsent. Nothing is parsed that could hold the event loop for long.
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from collections.abc import AsyncIterator
import httpx
import pytest

from tests.support.bwclient import BitwardenClient
from tests.support.rawhttp import RawReply, send_start_of
from tests.support.vaultstate import TOKEN_PATH
from tests.vaultapi.conftest import PASSWORD, running_api

MiB = 1024 * 1024

#: every route anyone may POST to, with the content type its clients use
ANONYMOUS_ROUTES = [
    (TOKEN_PATH, "application/x-www-form-urlencoded"),
    ("/identity/accounts/prelogin/password", "application/json"),
    ("/identity/accounts/prelogin", "application/json"),
    ("/api/accounts/prelogin", "application/json"),
    ("/identity/accounts/register", "application/json"),
    ("/api/accounts/register", "application/json"),
    ("/identity/accounts/register/send-verification-email", "application/json"),
    ("/identity/accounts/register/finish", "application/json"),
]


def _assert_too_large(reply: RawReply, path: str) -> None:
    assert reply.status == 413, (path, reply.status, reply.body[:200])
    body = reply.json()
    if path == TOKEN_PATH:
        assert body["error"] == "invalid_request" and body["error_description"], body
    else:
        assert body["object"] == "error" and body["message"], body


@pytest.fixture
async def full_size_api(database_url: str) -> AsyncIterator[str]:
    """The API with its production limits (other test modules shrink them)."""
    async with running_api(database_url) as url:
        yield url


async def test_huge_body_to_each_anonymous_route_is_413_before_it_is_sent(full_size_api: str) -> None:
    for path, content_type in ANONYMOUS_ROUTES:
        _assert_too_large(await send_start_of(full_size_api, path, content_type, 16 * MiB), path)


async def test_huge_chunked_body_to_each_anonymous_route_is_413_before_it_ends(full_size_api: str) -> None:
    for path, content_type in ANONYMOUS_ROUTES:
        _assert_too_large(await send_start_of(full_size_api, path, content_type, 16 * MiB, chunked=True), path)


async def test_vault_write_larger_than_its_limit_is_413_before_it_is_sent(full_size_api: str) -> None:
    client = BitwardenClient(full_size_api)
    try:
        await client.register("big@example.com", PASSWORD)
        await client.login()
        auth = {"Authorization": f"Bearer {client.access_token}"}
        for path in ("/api/ciphers", "/api/folders", "/api/ciphers/move"):
            reply = await send_start_of(full_size_api, path, "application/json", 16 * MiB, headers=auth)
            _assert_too_large(reply, path)
        # the import takes large bodies, but not unbounded ones, and only from a signed-in caller
        reply = await send_start_of(full_size_api, "/api/ciphers/import", "application/json", 64 * MiB, headers=auth)
        _assert_too_large(reply, "/api/ciphers/import")
        anonymous = await send_start_of(full_size_api, "/api/ciphers/import", "application/json", 16 * MiB)
        assert anonymous.status == 401 and anonymous.json()["object"] == "error"
    finally:
        await client.aclose()


async def test_stranger_with_a_huge_body_is_401_before_it_is_sent(full_size_api: str) -> None:
    """As the Bitwarden server: the token is checked before the body is read, whatever its size."""
    for path in ("/api/ciphers", "/api/accounts/profile", "/api/ciphers/import"):
        for credentials in ({}, {"Authorization": "Bearer a.b.c"}):
            reply = await send_start_of(full_size_api, path, "application/json", 64 * MiB, headers=credentials)
            assert reply.status == 401 and reply.json()["object"] == "error", (path, credentials, reply.status)


async def test_token_form_with_too_many_fields_is_400_in_the_oauth_shape(alice: BitwardenClient, db) -> None:
    devices = await db.fetchval("SELECT count(*) FROM devices")
    form = {"grant_type": "password", "username": alice.email, "password": alice.password_hash(),
            "scope": "api offline_access", "client_id": "cli", "deviceType": "25",
            "deviceIdentifier": "crowded-device", "deviceName": "linux"}
    crowded = urllib.parse.urlencode({**form, **{f"x{n}": "" for n in range(200)}}).encode()
    reply = await alice.http.post(TOKEN_PATH, content=crowded,
                                  headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"] == "invalid_request"
    assert await db.fetchval("SELECT count(*) FROM devices") == devices
    # the same login with the fields the clients send works
    assert (await alice.http.post(TOKEN_PATH, data=form)).status_code == 200


async def _alive_latency(client: httpx.AsyncClient, url: str) -> float:
    started = time.perf_counter()
    reply = await client.get(f"{url}/alive")
    assert reply.status_code == 200
    return time.perf_counter() - started


async def _flood(url: str, path: str, content_type: str, body: bytes, until: asyncio.Event) -> None:
    """Send whole huge bodies again and again, as an attacker would, ignoring the early answer."""
    parts = urllib.parse.urlsplit(url)
    while not until.is_set():
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        head = f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: {content_type}\r\n" \
               f"Content-Length: {len(body)}\r\n\r\n"
        try:
            writer.write(head.encode() + body)
            await writer.drain()
            await reader.read(1024)
        except ConnectionError:
            pass
        finally:
            writer.close()


async def test_alive_is_not_held_up_by_huge_anonymous_bodies(full_size_api: str) -> None:
    form = b"a=b&" * (4 * MiB)  # 16 MiB of form fields: once 3.4 s of parsing on the event loop
    prelogin = b'{"email": "' + b"x" * (28 * MiB) + b'"}'
    async with httpx.AsyncClient() as client:
        baseline = max([await _alive_latency(client, full_size_api) for _ in range(20)])
        stop = asyncio.Event()
        floods = [asyncio.ensure_future(_flood(full_size_api, path, kind, body, stop)) for path, kind, body in (
            (TOKEN_PATH, "application/x-www-form-urlencoded", form),
            ("/identity/accounts/prelogin/password", "application/json", prelogin))]
        try:
            await asyncio.sleep(0.2)
            loaded = []
            for _ in range(20):
                loaded.append(await _alive_latency(client, full_size_api))
                await asyncio.sleep(0.02)
        finally:
            stop.set()
            await asyncio.gather(*floods, return_exceptions=True)
    # generous: the flood itself competes for the CPU, but no request may wait for a parse
    assert max(loaded) < max(1.0, 20 * baseline), (baseline, loaded)
