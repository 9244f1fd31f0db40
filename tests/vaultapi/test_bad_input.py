"""Bad input on every route: a clean 4xx in the Bitwarden shape, never a 5xx, never a write.

The app here refuses bodies over 64 KiB, so oversized requests are cheap to make.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.keystore import load_signing_key
from db.events import Event
from tests.support.bwclient import BitwardenClient
from tests.support.listen import EventListener
from tests.support.vaultstate import TOKEN_PATH, assert_error_shape, user_rows, vault_bytes
from tests.vaultapi.conftest import running_api, user_id_of

MAX_BODY = 64 * 1024


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[str]:
    async with running_api(database_url, max_body_size=MAX_BODY) as url:
        yield url


async def send(client: BitwardenClient, method: str, path: str, content: bytes | None,
               content_type: str | None = "application/json", *, auth: bool = True,
               headers: dict[str, str] | None = None) -> httpx.Response:
    """A raw request: the body goes out byte for byte, with whatever content type is given.

    Each on a connection of its own: the server closes one whose GET body it did not read.
    """
    sent = {**(client.auth_headers if auth else client._device_headers()), "Connection": "close", **(headers or {})}
    if content_type is not None:
        sent["Content-Type"] = content_type
    return await client.http.request(method, path, content=content, headers=sent)


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
    # a paired surrogate escape is an ordinary emoji (in plain text: vault names are EncStrings)
    domains = [["\U0001F511.example", "b.example"]]
    emoji = await send(alice, "POST", "/api/settings/domains", raw_json({"equivalentDomains": domains}))
    assert emoji.status_code == 200 and emoji.json()["equivalentDomains"] == domains
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


async def test_refused_password_change_changes_nothing(alice: BitwardenClient, events, db) -> None:
    """The old password is right, the rest is not: the account, its tokens and its sessions stay."""
    me = await user_id_of(alice)
    before = (await vault_bytes(alice), await user_rows(db, me))
    change = {"masterPasswordHash": alice.password_hash(), "newMasterPasswordHash": "bmV3", "key": "2.a|b|c",
              "masterPasswordHint": None}
    for spoilt in ({"key": 7}, {"key": None}, {"newMasterPasswordHash": ["x"]}, {"masterPasswordHint": {"a": 1}},
                   {"masterPasswordHint": "nul\x00"}, {"key": "2.a|b|c\x00"}, {"unlockData": "x"}):
        reply = await alice.post("/api/accounts/password", {**change, **spoilt})
        assert reply.status_code == 400, (spoilt, reply.text)
        assert_error_shape(reply)
    await events.nothing()
    assert (await vault_bytes(alice), await user_rows(db, me)) == before
    assert (await alice.refresh()).status_code == 200


async def test_every_forged_or_stale_token_is_401(arena: Arena) -> None:
    for credentials in arena.bad_tokens:
        for method, path in (("GET", "/api/sync"), ("POST", "/api/folders"), ("POST", "/notifications/hub/negotiate"),
                             ("PUT", f"/api/ciphers/{arena.bob_cipher}/delete")):
            reply = await send(arena.bob, method, path, raw_json({"name": "x"}),
                               headers={"Authorization": credentials})
            assert reply.status_code == 401, (credentials, path, reply.text)
            await arena.settle(reply)


# ---- the fuzz: every route, malformed input, as the user and as nobody ----------------------

#: a well-formed EncString (vault names are checked for the shape)
ENC_NAME = "2.QUFBQUFBQUFBQUFBQUFBQQ==|QUFB|QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE="

#: (method, path, a well-formed body); {cipher} and {folder} stand for ids the fuzz picks
AUTHENTICATED_ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/api/accounts/profile", None),
    ("PUT", "/api/accounts/profile", {"name": "Alice", "culture": "en-US", "masterPasswordHint": None}),
    ("POST", "/api/accounts/profile", {"name": "Alice", "culture": "en-US", "masterPasswordHint": None}),
    ("GET", "/api/accounts/revision-date", None),
    ("POST", "/api/accounts/key-management/user-key-id", {"userKeyId": "0123456789abcdef0123456789abcdef"}),
    ("POST", "/api/accounts/verify-password", {"masterPasswordHash": "bm90IHRoZSBoYXNo"}),
    ("POST", "/api/accounts/password", {"masterPasswordHash": "bm90IHRoZSBoYXNo", "newMasterPasswordHash": "x",
                                        "key": "2.a|b|c", "masterPasswordHint": None}),
    ("POST", "/api/accounts/security-stamp", {"masterPasswordHash": "bm90IHRoZSBoYXNo"}),
    ("GET", "/api/sync?excludeDomains=true", None),
    ("POST", "/api/accounts/kdf", {"masterPasswordHash": "bm90IHRoZSBoYXNo", "newMasterPasswordHash": "x",
                                   "key": "2.a|b|c", "kdf": 0, "kdfIterations": 600_000}),
    ("PUT", "/api/accounts/avatar", {"avatarColor": "#aabbcc"}),
    ("POST", "/api/accounts/api-key", {"masterPasswordHash": "bm90IHRoZSBoYXNo"}),
    ("POST", "/api/accounts/rotate-api-key", {"masterPasswordHash": "bm90IHRoZSBoYXNo"}),
    ("POST", "/api/accounts/delete", {"masterPasswordHash": "bm90IHRoZSBoYXNo"}),
    ("POST", "/api/ciphers/purge", {"masterPasswordHash": "bm90IHRoZSBoYXNo"}),
    ("GET", "/api/devices", None),
    ("GET", "/api/devices/{cipher}", None),
    ("POST", "/api/devices/{cipher}/deactivate", None),
    ("GET", "/api/auth-requests", None),
    ("GET", "/api/auth-requests/pending", None),
    ("GET", "/api/auth-requests/{cipher}", None),
    ("PUT", "/api/auth-requests/{cipher}", {"key": "4.AAAA", "masterPasswordHash": None,
                                            "deviceIdentifier": "{folder}", "requestApproved": True}),
    ("GET", "/api/ciphers", None),
    ("POST", "/api/ciphers", "item"),
    ("POST", "/api/ciphers/create", {"cipher": "item", "collectionIds": []}),
    ("GET", "/api/ciphers/{cipher}", None),
    ("GET", "/api/ciphers/{cipher}/details", None),
    ("PUT", "/api/ciphers/{cipher}", "item"),
    ("POST", "/api/ciphers/{cipher}", "item"),
    ("PUT", "/api/ciphers/{cipher}/partial", {"folderId": "{folder}", "favorite": True}),
    ("POST", "/api/ciphers/{cipher}/partial", {"folderId": "{folder}", "favorite": False}),
    ("PUT", "/api/ciphers/{cipher}/delete", None),
    ("PUT", "/api/ciphers/{cipher}/restore", None),
    ("DELETE", "/api/ciphers/{cipher}", None),
    ("POST", "/api/ciphers/{cipher}/delete", None),
    ("PUT", "/api/ciphers/move", {"ids": ["{cipher}"], "folderId": "{folder}"}),
    ("POST", "/api/ciphers/move", {"ids": ["{cipher}"], "folderId": None}),
    ("PUT", "/api/ciphers/delete", {"ids": ["{cipher}"]}),
    ("PUT", "/api/ciphers/restore", {"ids": ["{cipher}"]}),
    ("POST", "/api/ciphers/delete", {"ids": ["{cipher}"]}),
    ("DELETE", "/api/ciphers", {"ids": ["{cipher}"]}),
    ("POST", "/api/ciphers/import", {"ciphers": ["item"], "folders": [{"id": "{folder}", "name": ENC_NAME}],
                                     "folderRelationships": [{"key": 0, "value": 0}]}),
    ("GET", "/api/folders", None),
    ("POST", "/api/folders", {"name": ENC_NAME}),
    ("GET", "/api/folders/{folder}", None),
    ("PUT", "/api/folders/{folder}", {"name": ENC_NAME}),
    ("POST", "/api/folders/{folder}", {"name": ENC_NAME}),
    ("DELETE", "/api/folders/{folder}", None),
    ("POST", "/api/folders/{folder}/delete", None),
    ("GET", "/api/settings/domains", None),
    ("PUT", "/api/settings/domains", {"equivalentDomains": [["a.example", "b.example"]],
                                      "excludedGlobalEquivalentDomains": [1]}),
    ("POST", "/api/settings/domains", {"equivalentDomains": [], "excludedGlobalEquivalentDomains": []}),
    ("POST", "/notifications/hub/negotiate", None),
]

#: routes anyone may call; {victim} is the other user's email
OPEN_ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/api/config", None),
    ("GET", "/alive", None),
    ("GET", "/api/version", None),
    ("POST", "/identity/accounts/prelogin/password", {"email": "{victim}"}),
    ("POST", "/identity/accounts/prelogin", {"email": "{victim}"}),
    ("POST", "/api/accounts/prelogin", {"email": "{victim}"}),
    ("POST", "/identity/accounts/register", {
        "email": "{victim}", "name": "x", "masterPasswordHash": "aGFzaA==", "masterPasswordHint": None,
        "key": "2.a|b|c", "kdf": 0, "kdfIterations": 600_000, "keys": {"publicKey": "p", "encryptedPrivateKey": "e"}}),
    ("POST", "/identity/accounts/register/send-verification-email", {"email": "{victim}", "name": "x"}),
    ("POST", "/identity/accounts/register/finish", {
        "email": "{victim}", "emailVerificationToken": "a.b.c", "masterPasswordHint": None,
        "masterPasswordAuthentication": {"masterPasswordAuthenticationHash": "aGFzaA=="},
        "masterPasswordUnlock": {"masterKeyWrappedUserKey": "2.a|b|c",
                                 "kdf": {"kdfType": 0, "iterations": 600_000, "memory": None, "parallelism": None}},
        "userAsymmetricKeys": {"publicKey": "p", "encryptedPrivateKey": "e"}}),
    ("GET", "/api/devices/knowndevice", None),
    ("POST", "/api/auth-requests", {"email": "{victim}", "publicKey": "cHVibGlj", "deviceIdentifier": "{text}",
                                    "accessCode": "{text}", "type": 0}),
    ("GET", "/api/auth-requests/{text}/response?code={text}", None),
    ("GET", "/api/devices/knowndevice/{victim}/{text}", None),
    ("POST", TOKEN_PATH, "form"),
]

_odd_numbers = st.sampled_from([2**31, 2**63, -(2**63) - 1, 10**40, 32768, -1, 0, 1.5, float("inf"), float("nan")])
_odd_text = st.sampled_from(["", " ", "\x00", "a\x00b", "\ud800", "\U0001F511", "not-a-uuid",
                             "00000000-0000-0000-0000-000000000000", "' OR '1'='1", "x" * 70_000, "1e999",
                             "2.a|b|c", "0123456789abcdef0123456789abcdef"])
_scalars = st.one_of(st.none(), st.booleans(), st.integers(), _odd_numbers, st.floats(), st.text(max_size=12), _odd_text)
_garbage = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=6)
_raw_bodies = st.sampled_from([
    b"", b"{", b"}", b"null", b"[]", b"\x00", b"\xff\xfe\xfd", b"name=x&type=1", b'{"a":1e99999}',
    b"1" * 5000, b'{"name": "\\u0000"}', b"[" * 5000, b'{"name":"' + b"x" * MAX_BODY + b'"}',
])
_content_types = st.sampled_from([
    "application/json", "application/json", "application/json; charset=utf-8", "text/plain",
    "application/x-www-form-urlencoded", "multipart/form-data", "multipart/form-data; boundary=x", None])
# what a header value can carry at all: visible ASCII and Latin-1, no spaces at the ends
_header_text = st.text(st.characters(min_codepoint=0x21, max_codepoint=0xFF, exclude_characters="\x7f"),
                       min_size=1, max_size=60)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place inside a JSON value, as the keys and indexes that lead to it."""
    found = [prefix]
    if isinstance(value, dict):
        for key, inner in value.items():
            found += _paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            found += _paths(inner, (*prefix, index))
    return found


def _replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _replaced(value[path[0]], path[1:], new)
    return copy


def _without(value: Any, path: tuple[Any, ...]) -> Any:
    parent = value
    for key in path[:-1]:
        parent = parent[key]
    smaller = ({key: inner for key, inner in parent.items() if key != path[-1]} if isinstance(parent, dict)
               else [inner for index, inner in enumerate(parent) if index != path[-1]])
    return _replaced(value, path[:-1], smaller)


def _fill(template: Any, names: dict[str, Any]) -> Any:
    """A route's body template with its placeholders ("item", "{cipher}", ...) filled in."""
    if isinstance(template, dict):
        return {key: _fill(value, names) for key, value in template.items()}
    if isinstance(template, list):
        return [_fill(value, names) for value in template]
    if isinstance(template, str) and template in names:
        return names[template]
    return template


def _body(data: st.DataObject, template: Any, names: dict[str, Any]) -> tuple[bytes | None, str | None]:
    """A request body: the well-formed one, one of its parts spoilt, or plain garbage."""
    content_type = data.draw(_content_types, label="content type")
    how = data.draw(st.sampled_from(["as is", "spoil", "spoil", "drop", "extra", "garbage", "raw"]), label="how")
    if how == "raw":
        return data.draw(_raw_bodies, label="raw body"), content_type
    value = _fill(template, names)
    places = _paths(value)
    if how == "spoil":
        victim_id = st.sampled_from([names["{victim cipher}"], names["{victim folder}"]])
        value = _replaced(value, data.draw(st.sampled_from(places), label="where"),
                          data.draw(_garbage | victim_id, label="with"))
    elif how == "drop" and len(places) > 1:
        value = _without(value, data.draw(st.sampled_from(places[1:]), label="drop"))
    elif how == "extra" and isinstance(value, dict):
        value = {**value, data.draw(st.text(max_size=12), label="key"): data.draw(_garbage, label="value")}
    elif how == "garbage":
        value = data.draw(_garbage, label="body")
    return raw_json(value), content_type


class Arena:
    """Alice throws bad input at the API; Bob's vault must come out of it byte for byte as it was."""

    def __init__(self, alice: BitwardenClient, bob: BitwardenClient, db: asyncpg.Connection) -> None:
        self.alice, self.bob, self.db = alice, bob, db

    async def setup(self) -> Arena:
        self.alice_id, self.bob_id = await user_id_of(self.alice), await user_id_of(self.bob)
        await self.alice_targets()
        bob_folder = (await self.bob.post("/api/folders", {"name": self.bob.encrypt("Bob's")})).json()["id"]
        bob_item = {**self.bob.login_item("Bob's bank", folder_id=bob_folder), "favorite": True}
        self.bob_cipher = (await self.bob.post("/api/ciphers", bob_item)).json()["id"]
        self.bob_folder = bob_folder
        await self.bob.put("/api/settings/domains", {"equivalentDomains": [["bob.example", "bob.test"]]})
        await self.bob.post("/api/accounts/key-management/user-key-id", {"userKeyId": "ab" * 16})
        self.bob_seen = await self.bob_state()
        self.alice_seen = await vault_bytes(self.alice)
        self.bad_tokens = await self._bad_tokens()
        return self

    async def alice_targets(self) -> None:
        """Alice's own folder and item, made again whenever the fuzz deleted them."""
        alice = self.alice
        folder = getattr(self, "alice_folder", None)
        if folder is None or (await alice.get(f"/api/folders/{folder}")).status_code == 404:
            self.alice_folder = (await alice.post("/api/folders", {"name": alice.encrypt("Mine")})).json()["id"]
        cipher = getattr(self, "alice_cipher", None)
        if cipher is None or (await alice.get(f"/api/ciphers/{cipher}")).status_code == 404:
            item = alice.login_item("Mine", folder_id=self.alice_folder)
            self.alice_cipher = (await alice.post("/api/ciphers", item)).json()["id"]
        self.item = alice.login_item("Fuzzed", folder_id=self.alice_folder)

    async def bob_state(self) -> tuple[Any, ...]:
        return (*await vault_bytes(self.bob), *await user_rows(self.db, self.bob_id))

    async def _bad_tokens(self) -> list[str]:
        """Authorization headers that must all be refused with a 401."""
        key = await load_signing_key(self.db, None)
        public_pem = key.public_pem
        claims = jwt.decode(self.alice.access_token, options={"verify_signature": False})
        now = int(time.time())

        def signed(**changes: Any) -> str:  # by the real key, naming it: only the claims are wrong
            return "Bearer " + jwt.encode({**claims, **changes}, key.private_key, algorithm="RS256",
                                          headers={"kid": key.kid})

        header, payload, signature = self.alice.access_token.split(".")
        as_bob = jwt.utils.base64url_encode(json.dumps({**claims, "sub": self.bob_id}).encode()).decode()
        unsigned = jwt.utils.base64url_encode(json.dumps({"alg": "none", "typ": "JWT", "kid": key.kid}).encode()).decode()
        hs256_header = jwt.utils.base64url_encode(json.dumps({"alg": "HS256", "typ": "JWT", "kid": key.kid}).encode()).decode()
        hs256_body = f"{hs256_header}.{payload}"
        hs256_mac = hmac.new(public_pem.encode(), hs256_body.encode(), hashlib.sha256).digest()
        return [
            "", "Bearer", "Basic YWxpY2U6cGFzcw==", "bearer\tx.y.z", "Bearer a.b.c", "Bearer ===.===.===",
            f"Bearer {header}.{payload}.{signature[:-4]}AAAA",
            f"Bearer {header}.{as_bob}.{signature}",
            f"Bearer {unsigned}.{payload}.",
            f"Bearer {hs256_body}.{jwt.utils.base64url_encode(hs256_mac).decode()}",
            signed(exp=now - 3600, nbf=now - 7200),
            signed(nbf=now + 3600, exp=now + 7200),
            signed(iss="https://elsewhere.test|login"),
            signed(iss="https://vault.test|register", sub=self.alice.email),
            signed(sstamp=str(uuid.uuid4())),
            signed(sstamp=None),
            signed(sub="not-a-uuid"),
            signed(sub=str(uuid.uuid4())),
        ]

    async def settle(self, reply: httpx.Response, *, attacker_may_write: bool = True) -> None:
        """After one request: the invariants that must hold, whatever it was."""
        assert reply.status_code < 500, (reply.request.method, reply.request.url, reply.status_code, reply.text)
        if reply.status_code >= 400:
            assert_error_shape(reply)
            # a refused request wrote nothing, not even part of what it asked for
            assert await vault_bytes(self.alice) == self.alice_seen, (reply.request.url, reply.text)
        else:
            assert 200 <= reply.status_code < 300 and attacker_may_write, (reply.request.url, reply.status_code)
            await self.alice_targets()
            self.alice_seen = await vault_bytes(self.alice)
        assert await self.bob_state() == self.bob_seen, (reply.request.method, reply.request.url)

    @property
    def victim_names(self) -> dict[str, str]:
        return {"{victim cipher}": self.bob_cipher, "{victim folder}": self.bob_folder}

    def pick_id(self, data: st.DataObject, kind: str) -> str:
        own = self.alice_cipher if kind == "cipher" else self.alice_folder
        theirs = self.bob_cipher if kind == "cipher" else self.bob_folder
        return data.draw(st.sampled_from([
            own, own, own.upper(), theirs, theirs, theirs.upper(), str(uuid.uuid4()), "not-a-uuid",
            "00000000-0000-0000-0000-000000000000", "%00", "..", "x" * 300, "' OR 1=1 --", f"{theirs}\x00"]),
            label=kind)


@pytest.fixture
async def arena(alice: BitwardenClient, bob: BitwardenClient, db, events) -> AsyncIterator[Arena]:
    made = await Arena(alice, bob, db).setup()
    await drain(events)
    yield made
    # nothing the fuzz did reached Bob's devices
    assert [event for event in await drain(events) if event.user_id == made.bob_id] == []


async def drain(events: EventListener) -> list[Event]:
    """Every event published so far: collected until none has come for a short wait."""
    received = []
    while True:
        try:
            received.append(await asyncio.wait_for(events.queue.get(), 0.3))
        except TimeoutError:
            return received


def _path(template: str, names: dict[str, str]) -> str:
    for name, value in names.items():
        template = template.replace(name, urllib.parse.quote(value, safe=""))
    return template


def _routable(text: str) -> bool:
    """Whether an id can stand in a path at all (else the router answers 404 before anyone asks who)."""
    try:
        return uuid.UUID(text) is not None and "\x00" not in text
    except ValueError:
        return False


_FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))


@_FUZZ
@given(data=st.data())
async def test_malformed_requests_on_authenticated_routes(arena: Arena, data: st.DataObject) -> None:
    method, template, body_template = data.draw(st.sampled_from(AUTHENTICATED_ROUTES), label="route")
    cipher_id, folder_id = arena.pick_id(data, "cipher"), arena.pick_id(data, "folder")
    names = {"item": arena.item, "{cipher}": cipher_id, "{folder}": folder_id, **arena.victim_names}
    content, content_type = (None, None) if body_template is None and data.draw(st.booleans(), label="no body") \
        else _body(data, body_template, names)
    credentials = "alice"
    if data.draw(st.sampled_from([False, False, False, True]), label="bad credentials"):
        credentials = data.draw(st.sampled_from(arena.bad_tokens), label="authorization")
    headers = {"Authorization": credentials} if credentials != "alice" else {}
    if data.draw(st.booleans(), label="odd device headers"):
        headers |= {name: data.draw(_header_text, label=name) for name in ("Device-Type", "Device-Identifier",
                                                                             "Bitwarden-Client-Version")}
    reply = await send(arena.alice, method, _path(template, {"{cipher}": cipher_id, "{folder}": folder_id}),
                       content, content_type, headers={k: v.encode("latin-1") for k, v in headers.items()})
    if credentials != "alice" and _routable(cipher_id) and _routable(folder_id):
        assert reply.status_code == 401, (credentials, reply.status_code, reply.text)
    await arena.settle(reply)


@settings(_FUZZ, max_examples=50)
@given(data=st.data())
async def test_malformed_requests_on_open_routes(arena: Arena, data: st.DataObject) -> None:
    method, template, body_template = data.draw(st.sampled_from(OPEN_ROUTES), label="route")
    victim = data.draw(st.sampled_from([arena.bob.email, arena.alice.email, "nobody@example.com"]), label="email")
    text = data.draw(_header_text, label="text")
    headers: dict[str, Any] = {}
    if data.draw(st.booleans(), label="anonymous"):
        headers["Authorization"] = b""
    if template == TOKEN_PATH:
        form = {"grant_type": data.draw(st.sampled_from(["password", "refresh_token", "client_credentials", ""])),
                "authRequest": data.draw(st.sampled_from([None, text, "00000000-0000-0000-0000-000000000000"])),
                "client_secret": text,
                "username": victim, "password": data.draw(st.sampled_from([arena.alice.password_hash(), text])),
                "refresh_token": data.draw(st.sampled_from([arena.alice.tokens["refresh_token"], text])),
                "scope": "api offline_access", "client_id": "cli", "deviceType": "25",
                "deviceIdentifier": arena.alice.device, "deviceName": "linux"}
        content, content_type = _body(data, form, arena.victim_names)
        if content_type == "application/x-www-form-urlencoded" and content and content.startswith(b"{"):
            # a form as the clients send it, each value as it came out of the JSON above
            spoilt = json.loads(content)
            if isinstance(spoilt, dict):
                content = urllib.parse.urlencode({str(k): json.dumps(v) if not isinstance(v, str) else v
                                                  for k, v in spoilt.items()}, errors="surrogatepass").encode()
    elif body_template is None:
        content, content_type = None, None
        encoded = base64.urlsafe_b64encode(victim.encode()).decode().rstrip("=")
        headers["X-Request-Email"] = data.draw(st.sampled_from([encoded, text, encoded + "*", "=" * 4]))
        headers["X-Device-Identifier"] = data.draw(st.sampled_from([arena.bob.device, text]))
    else:
        content, content_type = _body(data, body_template, {**arena.victim_names, "{victim}": victim})
    path = _path(template, {"{victim}": victim, "{text}": text})
    reply = await send(arena.alice, method, path, content, content_type,
                       headers={k: v.encode("latin-1") if isinstance(v, str) else v for k, v in headers.items()})
    await arena.settle(reply)


# ---- the fuzz on organization routes: Alice owns one, Bob another -----------------------------

_SELECTION = {"id": "{collection}", "readOnly": False, "hidePasswords": True, "manage": False}
_MEMBER_SELECTION = {"id": "{member}", "readOnly": True, "hidePasswords": False, "manage": False}

#: (method, path, a well-formed body); {org}, {member}, {collection} and {cipher} are picked ids
ORGANIZATION_ROUTES: list[tuple[str, str, Any]] = [
    ("POST", "/api/organizations", {"name": "Fuzz", "billingEmail": "fuzz@example.com", "planType": 0,
                                    "key": "4.a2V5", "keys": {"publicKey": "cHVi", "encryptedPrivateKey": "2.a|b|c"},
                                    "collectionName": "2.a|b|c"}),
    ("GET", "/api/organizations/{org}", None),
    ("PUT", "/api/organizations/{org}", {"name": "Fuzz", "billingEmail": "fuzz@example.com",
                                         "keys": {"publicKey": "cHVi", "encryptedPrivateKey": "2.a|b|c"}}),
    ("DELETE", "/api/organizations/{org}", {"masterPasswordHash": "bm90IHRoZSBoYXNo"}),
    ("GET", "/api/organizations/{org}/keys", None),
    ("POST", "/api/organizations/{org}/keys", {"publicKey": "cHVi", "encryptedPrivateKey": "2.a|b|c"}),
    ("POST", "/api/organizations/{org}/leave", None),
    ("GET", "/api/organizations/{org}/groups", None),
    ("POST", "/api/organizations/{org}/users/invite", {"emails": ["fuzzed@example.com"], "type": 4, "groups": [],
                                                       "collections": [_SELECTION], "permissions": {"manageUsers": True}}),
    ("GET", "/api/organizations/{org}/users", None),
    ("GET", "/api/organizations/{org}/users/{member}", None),
    ("POST", "/api/organizations/{org}/users/public-keys", {"ids": ["{member}"]}),
    ("POST", "/api/organizations/{org}/users/{member}/confirm", {"key": "4.a2V5", "defaultUserCollectionName": None}),
    ("POST", "/api/organizations/{org}/users/confirm", {"keys": [{"id": "{member}", "key": "4.a2V5"}]}),
    ("PUT", "/api/organizations/{org}/users/{member}", {"type": 2, "collections": [_SELECTION], "groups": [],
                                                        "permissions": None}),
    ("PUT", "/api/organizations/{org}/users/{member}/revoke", None),
    ("PUT", "/api/organizations/{org}/users/revoke", {"ids": ["{member}"]}),
    ("PUT", "/api/organizations/{org}/users/{member}/restore/vnext", {"defaultUserCollectionName": None}),
    ("PUT", "/api/organizations/{org}/users/restore", {"ids": ["{member}"]}),
    ("DELETE", "/api/organizations/{org}/users/{member}", None),
    ("DELETE", "/api/organizations/{org}/users", {"ids": ["{member}"]}),
    ("GET", "/api/collections", None),
    ("GET", "/api/organizations/{org}/collections", None),
    ("GET", "/api/organizations/{org}/collections/details", None),
    ("GET", "/api/organizations/{org}/collections/{collection}/details", None),
    ("GET", "/api/organizations/{org}/collections/{collection}/users", None),
    ("POST", "/api/organizations/{org}/collections", {"name": "2.a|b|c", "externalId": "x", "groups": [],
                                                      "users": [_MEMBER_SELECTION]}),
    ("PUT", "/api/organizations/{org}/collections/{collection}", {"name": "2.a|b|c", "users": [_MEMBER_SELECTION]}),
    ("DELETE", "/api/organizations/{org}/collections/{collection}", None),
    ("DELETE", "/api/organizations/{org}/collections", {"ids": ["{collection}"]}),
    ("POST", "/api/organizations/{org}/collections/bulk-access", {"collectionIds": ["{collection}"], "groups": [],
                                                                  "users": [_MEMBER_SELECTION]}),
    ("POST", "/api/ciphers/create", {"cipher": "org item", "collectionIds": ["{collection}"]}),
    ("PUT", "/api/ciphers/{cipher}/share", {"cipher": "org item", "collectionIds": ["{collection}"]}),
    ("PUT", "/api/ciphers/{cipher}/collections_v2", {"collectionIds": ["{collection}"]}),
    ("POST", "/api/ciphers/import-organization?organizationId={org}", {
        "ciphers": ["org item"], "collections": [{"name": "2.a|b|c"}],
        "collectionRelationships": [{"key": 0, "value": 0}], "folders": [], "folderRelationships": []}),
    ("GET", "/api/ciphers/organization-details?organizationId={org}", None),
]


class OrganizationArena:
    """Alice's organization and Bob's: Bob's, down to its rows, must come out as it was."""

    def __init__(self, arena: Arena) -> None:
        self.arena = arena

    async def setup(self) -> OrganizationArena:
        from tests.support.organizations import Organization

        bob = self.arena.bob
        self.theirs = await Organization.create(bob, "Bob's")
        self.their_member = await self.theirs.invite("bob-invited@example.com")
        self.their_item = (await bob.post("/api/ciphers/create", {
            "cipher": bob.org_item(self.theirs.id, "Bob's shared"),
            "collectionIds": [self.theirs.default_collection]})).json()["id"]
        self.mine = await Organization.create(self.arena.alice, "Alice's")
        await self.targets()
        self.arena.bob_seen = await self.bob_state()
        self.arena.alice_seen = await vault_bytes(self.arena.alice)
        return self

    async def targets(self) -> None:
        """Alice's organization, a collection and an invited member, made again when the fuzz
        took them away."""
        alice, org = self.arena.alice, self.mine
        collections = (await alice.get(f"{org.path}/collections")).json()["data"]
        self.collection = collections[0]["id"] if collections else await org.collection("Again")
        listed = (await alice.get(f"{org.path}/users")).json()["data"]
        invited = [m["id"] for m in listed if m["email"] != alice.email]
        self.member = invited[0] if invited else await org.invite("target@example.com")

    async def bob_state(self) -> tuple[Any, ...]:
        rows = await self.arena.db.fetchrow(
            """
            SELECT (SELECT jsonb_agg(m ORDER BY m.id) FROM memberships m WHERE organization_id = $1)::text,
                   (SELECT jsonb_agg(c ORDER BY c.id) FROM collections c WHERE organization_id = $1)::text,
                   (SELECT jsonb_agg(g ORDER BY g.collection_id) FROM collection_members g
                     WHERE organization_id = $1)::text,
                   (SELECT jsonb_agg(c ORDER BY c.id) FROM ciphers c WHERE organization_id = $1)::text
            """, uuid.UUID(self.theirs.id))
        return (*await self.arena.bob_state(), *rows)

    def pick(self, data: st.DataObject, kind: str) -> str:
        own = {"org": self.mine.id, "member": self.member, "collection": self.collection}[kind]
        theirs = {"org": self.theirs.id, "member": self.their_member, "collection": self.theirs.default_collection}[kind]
        return data.draw(st.sampled_from([own, own, own, own.upper(), theirs, theirs, str(uuid.uuid4()), "not-a-uuid",
                                          "00000000-0000-0000-0000-000000000000", f"{theirs}\x00"]), label=kind)


@pytest.fixture
async def org_arena(arena: Arena, events: EventListener) -> AsyncIterator[OrganizationArena]:
    made = await OrganizationArena(arena).setup()
    await drain(events)
    yield made
    # nothing the fuzz did reached Bob's organization
    assert [e for e in await drain(events) if e.org_id == made.theirs.id] == []


@settings(_FUZZ, max_examples=150)
@given(data=st.data())
async def test_malformed_requests_on_organization_routes(org_arena: OrganizationArena, data: st.DataObject) -> None:
    arena = org_arena.arena
    method, template, body_template = data.draw(st.sampled_from(ORGANIZATION_ROUTES), label="route")
    ids = {f"{{{kind}}}": org_arena.pick(data, kind) for kind in ("org", "member", "collection")}
    ids["{cipher}"] = arena.pick_id(data, "cipher")
    organization_id = ids["{org}"]
    item = arena.alice.org_item(org_arena.mine.id, "Fuzzed") if organization_id != org_arena.theirs.id \
        else {**arena.alice.login_item("Fuzzed"), "organizationId": organization_id}
    names = {"org item": item, **ids, **arena.victim_names}
    content, content_type = (None, None) if body_template is None and data.draw(st.booleans(), label="no body") \
        else _body(data, body_template, names)
    reply = await send(arena.alice, method, _path(template, ids), content, content_type)
    assert reply.status_code < 500, (method, template, reply.status_code, reply.text)
    if reply.status_code >= 400:
        assert_error_shape(reply)
        assert await vault_bytes(arena.alice) == arena.alice_seen, (method, template, reply.text)
    else:
        await arena.alice_targets()
        await org_arena.targets()
        arena.alice_seen = await vault_bytes(arena.alice)
    assert await org_arena.bob_state() == arena.bob_seen, (method, template)


async def test_a_url_that_cannot_be_parsed_is_a_plain_400_quoting_nothing(api: str, caplog) -> None:
    """Sanic once answered such a URL with an error quoting it, then logged a traceback quoting
    it: a URL may carry a secret (the hub's access_token, a signed download)."""
    caplog.set_level(logging.DEBUG)
    url = urllib.parse.urlsplit(api)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        writer.write(f"GET /alive?secret=s3cr3tvalue&z=\x00 HTTP/1.1\r\nHost: {url.netloc}\r\n\r\n".encode())
        answer = await asyncio.wait_for(reader.read(65536), 10)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"s3cr3tvalue" not in answer
    logged = "\n".join(record.getMessage() + str(record.exc_info) for record in caplog.records)
    assert "s3cr3tvalue" not in logged
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]
