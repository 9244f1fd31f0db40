"""Request bodies: each route takes what its callers need, refused before the rest arrives.

A body over a route's limit is answered 413 from its Content-Length (or from the chunks that
came so far), so the tests below send only the start of a huge body and expect the answer while
the rest is still unsent. Nothing is parsed that could hold the event loop for long.
"""

from __future__ import annotations

import asyncio
import gc
import json
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.support.bwclient import BitwardenClient
from tests.support.rawhttp import RawReply, send_start_of
from tests.support.vaultstate import TOKEN_PATH
from tests.vaultapi.conftest import PASSWORD, running_api
from vaultapi.app import LimitedRequest
from vaultapi.body import Body

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
    ("/api/two-factor/send-email-login", "application/json"),
    ("/api/two-factor/recover", "application/json"),
    ("/api/accounts/password-hint", "application/json"),
    ("/api/auth-requests", "application/json"),
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


@pytest.fixture
async def signed_in(full_size_api: str) -> AsyncIterator[dict[str, str]]:
    """The Authorization header of a registered, logged-in user of full_size_api."""
    async with BitwardenClient(full_size_api) as client:
        await client.register("big@example.com", PASSWORD)
        await client.login()
        yield {"Authorization": f"Bearer {client.access_token}"}


async def test_vault_write_larger_than_its_limit_is_413_before_it_is_sent(
    full_size_api: str, signed_in: dict[str, str]
) -> None:
    auth = signed_in
    for path in ("/api/ciphers", "/api/folders", "/api/ciphers/move"):
        reply = await send_start_of(full_size_api, path, "application/json", 16 * MiB, headers=auth)
        _assert_too_large(reply, path)
    # the import takes large bodies, but not unbounded ones, and only from a signed-in caller
    reply = await send_start_of(full_size_api, "/api/ciphers/import", "application/json", 64 * MiB, headers=auth)
    _assert_too_large(reply, "/api/ciphers/import")
    anonymous = await send_start_of(full_size_api, "/api/ciphers/import", "application/json", 16 * MiB)
    assert anonymous.status == 401 and anonymous.json()["object"] == "error"


async def test_an_answered_request_keeps_no_body(full_size_api: str) -> None:
    # the database driver's timers (a new statement's cache expiry, an idle connection's check,
    # five minutes each, cancelled or not) keep the context they were set in, and with it the
    # request being served: its body, up to an import's 32 MiB, must not stay that long
    client = BitwardenClient(full_size_api)
    enc = "2.QUFBQUFBQUFBQUFBQUFBQQ==|QUFB|QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE="
    item = {"type": 1, "name": enc, "notes": "2.QUFB|" + "Q" * 8988 + "|QUFB", "login": {"username": enc}}
    body = json.dumps({"ciphers": [item] * 200, "folders": [], "folderRelationships": []}).encode()
    try:
        await client.register("importer@example.com", PASSWORD)
        await client.login()
        for _ in range(3):
            reply = await client.post("/api/ciphers/import", content=body, headers={"Content-Type": "application/json"})
            assert reply.status_code == 200, reply.text
        gc.collect()
        kept = [len(request.body) for request in gc.get_objects()
                if isinstance(request, LimitedRequest) and len(request.body or b"") > 64 * 1024]
        assert kept == []
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


async def _flood(url: str, path: str, content_type: str, body: bytes, until: asyncio.Event, sent: list[str]) -> None:
    """Send whole huge bodies again and again, as an attacker would, whatever the answer; each
    one the server is done with (answered or closed) adds the path to sent."""
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
            pass  # refused and closed before the body was all sent
        finally:
            writer.close()
        sent.append(path)


async def test_huge_anonymous_bodies_are_refused_unparsed_while_alive_answers(
    full_size_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """16 MiB of form fields once took 3.4 s of parsing on the event loop, /alive waiting as long.
    Now no byte of such a body is parsed, and /alive is answered while the floods go on (how
    long it waits is measured by bench/api_stalls.py)."""
    parsed: list[int] = []
    parse, get_form = Body.parse, LimitedRequest.get_form

    def parse_spy(body: bytes) -> Body:
        parsed.append(len(body))
        return parse(body)

    def get_form_spy(request: LimitedRequest, keep_blank_values: bool = False) -> Any:
        parsed.append(len(request.body))
        return get_form(request, keep_blank_values)

    monkeypatch.setattr(Body, "parse", staticmethod(parse_spy))
    monkeypatch.setattr(LimitedRequest, "get_form", get_form_spy)
    floods = {
        TOKEN_PATH: ("application/x-www-form-urlencoded", b"a=b&" * (4 * MiB)),
        "/identity/accounts/prelogin/password": ("application/json", b'{"email": "' + b"x" * (28 * MiB) + b'"}'),
    }
    sent: list[str] = []
    stop = asyncio.Event()
    flooding = [asyncio.ensure_future(_flood(full_size_api, path, kind, body, stop, sent))
                for path, (kind, body) in floods.items()]
    try:
        async with httpx.AsyncClient() as client:
            # until each flood has had a body dealt with (and goes on)
            for _ in range(10_000):
                if set(sent) == set(floods):
                    break
                assert (await client.get(f"{full_size_api}/alive")).status_code == 200
            assert set(sent) == set(floods), sent
            for _ in range(10):
                assert (await client.get(f"{full_size_api}/alive")).status_code == 200
        assert not any(flood.done() for flood in flooding), "a flood ended before /alive was asked"
    finally:
        stop.set()
        await asyncio.gather(*flooding, return_exceptions=True)
    assert parsed == [], parsed


async def test_two_step_settings_take_small_bodies(full_size_api: str, signed_in: dict[str, str]) -> None:
    """A code, a key and a token: 8 KiB; a WebAuthn key's attestation and the email change: 64 KiB."""
    for path in ("/api/two-factor/get-authenticator", "/api/two-factor/authenticator",
                 "/api/two-factor/email", "/api/accounts/email-token"):
        _assert_too_large(await send_start_of(full_size_api, path, "application/json", 16 * 1024,
                                              headers=signed_in), path)
    for path in ("/api/two-factor/webauthn", "/api/accounts/email"):
        _assert_too_large(await send_start_of(full_size_api, path, "application/json", 128 * 1024,
                                              headers=signed_in), path)
