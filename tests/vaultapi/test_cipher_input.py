"""What an item may hold: Bitwarden's encrypted-string shape and maximum lengths, field by field.

Every refusal is a 400 naming the field, and stores nothing. The shapes the official clients
send, every item type with every field filled, still round-trip unchanged.
"""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

import pytest

from tests.support.bwclient import BitwardenClient
from tests.support.rawhttp import send_start_of
from tests.support.vaultstate import vault_bytes
from tests.vaultapi.conftest import PASSWORD, running_api

IV, MAC = "A" * 22 + "==", "B" * 43 + "="


def enc(length: int) -> str:
    """A well-formed type-2 EncString of exactly `length` characters (a multiple of 4)."""
    assert length % 4 == 0 and length >= 76
    return f"2.{IV}|{'C' * (length - 72)}|{MAC}"


def full_login(client: BitwardenClient) -> dict[str, Any]:
    """A login item as the web vault and the CLI send it, every optional part present."""
    e = client.encrypt
    return {
        "type": 1, "folderId": None, "organizationId": None, "name": e("Bank"), "notes": e("notes"),
        "favorite": True, "reprompt": 1, "key": e("k" * 64), "lastKnownRevisionDate": None,
        # the caller's own id when a client sends it (another's is refused): none here
        "encryptedFor": None, "archivedDate": None, "attachments": None, "attachments2": None,
        "fields": [{"type": 0, "name": e("pin"), "value": e("1234"), "linkedId": None},
                   {"type": 1, "name": e("hidden"), "value": e("s3cret"), "linkedId": None},
                   {"type": 2, "name": e("flag"), "value": e("true"), "linkedId": None},
                   {"type": 3, "name": e("linked"), "value": None, "linkedId": 100}],
        "passwordHistory": [{"password": e("old"), "lastUsedDate": "2025-01-02T03:04:05.678Z"}],
        "login": {
            "uris": [{"uri": e("https://bank.example"), "uriChecksum": e("sum"), "match": None},
                     {"uri": e("https://bank.test"), "uriChecksum": None, "match": 3}],
            "username": e("alice"), "password": e("hunter2"), "passwordRevisionDate": "2025-01-02T03:04:05.678Z",
            "totp": e("otpauth://totp/x?secret=AAAA"), "autofillOnPageLoad": False,
            "fido2Credentials": [{
                "credentialId": e(str(uuid.uuid4())), "keyType": e("public-key"), "keyAlgorithm": e("ECDSA"),
                "keyCurve": e("P-256"), "keyValue": e("key"), "rpId": e("bank.example"), "rpName": e("Bank"),
                "userHandle": e("handle"), "userName": e("alice"), "userDisplayName": e("Alice"),
                "counter": e("0"), "discoverable": e("true"), "creationDate": "2025-01-02T03:04:05.678Z"}],
        },
        "secureNote": None, "card": None, "identity": None, "sshKey": None,
    }


def typed_items(client: BitwardenClient) -> list[dict[str, Any]]:
    e = client.encrypt
    base = {"folderId": None, "organizationId": None, "name": e("item"), "notes": None, "favorite": False,
            "reprompt": 0, "fields": None, "passwordHistory": None, "login": None, "secureNote": None,
            "card": None, "identity": None, "sshKey": None}
    card = {"cardholderName": e("Alice"), "brand": e("Visa"), "number": e("4111111111111111"),
            "expMonth": e("12"), "expYear": e("2030"), "code": e("123")}
    identity = {name: e(name) for name in (
        "title", "firstName", "middleName", "lastName", "address1", "address2", "address3", "city", "state",
        "postalCode", "country", "company", "email", "phone", "ssn", "username", "passportNumber",
        "licenseNumber")}
    ssh = {"privateKey": e("-----BEGIN OPENSSH PRIVATE KEY-----"), "publicKey": e("ssh-ed25519 AAAA"),
           "keyFingerprint": e("SHA256:abc")}
    return [full_login(client), {**base, "type": 2, "secureNote": {"type": 0}}, {**base, "type": 3, "card": card},
            {**base, "type": 4, "identity": identity}, {**base, "type": 5, "sshKey": ssh}]


#: (item type, where in the item, the Bitwarden maximum), every encrypted field of an item
LIMITS: list[tuple[int, tuple[Any, ...], int]] = [
    (1, ("name",), 1000), (1, ("notes",), 10000),
    (1, ("fields", 0, "name"), 1000), (1, ("fields", 0, "value"), 5000),
    (1, ("passwordHistory", 0, "password"), 5000),
    (1, ("login", "username"), 1000), (1, ("login", "password"), 5000), (1, ("login", "totp"), 1000),
    (1, ("login", "uris", 0, "uri"), 10000), (1, ("login", "uris", 0, "uriChecksum"), 10000),
    *[(1, ("login", "fido2Credentials", 0, name), 1000) for name in (
        "credentialId", "keyType", "keyAlgorithm", "keyCurve", "keyValue", "rpId", "rpName", "userHandle",
        "userName", "userDisplayName", "counter", "discoverable")],
    *[(3, ("card", name), 1000) for name in ("cardholderName", "brand", "number", "expMonth", "expYear", "code")],
    *[(4, ("identity", name), 1000) for name in (
        "title", "firstName", "middleName", "lastName", "address1", "address2", "address3", "city", "state",
        "postalCode", "country", "company", "email", "phone", "ssn", "username", "passportNumber",
        "licenseNumber")],
    (5, ("sshKey", "privateKey"), 5000), (5, ("sshKey", "publicKey"), 5000), (5, ("sshKey", "keyFingerprint"), 1000),
]


def field_name(path: tuple[Any, ...]) -> str:
    """How an error names a place: login.uris[0].uri."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def with_value(item: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(item)
    target = changed
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return changed


def assert_refused(reply: Any, field: str) -> None:
    assert reply.status_code == 400, (field, reply.status_code, reply.text[:300])
    body = reply.json()
    assert body["object"] == "error" and field in (body["validationErrors"] or {}), (field, body)


async def test_every_client_shape_round_trips(alice: BitwardenClient, events) -> None:
    for item in typed_items(alice):
        reply = await alice.post("/api/ciphers", item)
        assert reply.status_code == 200, (item["type"], reply.text)
        stored = reply.json()
        for key in ("name", "notes", "fields", "passwordHistory", "login", "secureNote", "card", "identity",
                    "sshKey", "key", "reprompt"):
            assert stored[key] == item.get(key), key
        await events.next()
    # older clients write PascalCase; the check reads it all the same
    pascal = {"Type": 1, "Name": alice.encrypt("Old"), "Login": {"Username": alice.encrypt("u"), "Uris": [
        {"Uri": alice.encrypt("https://old.example"), "Match": None}]}}
    assert (await alice.post("/api/ciphers", pascal)).status_code == 200
    bad_pascal = with_value(pascal, ("Login", "Uris", 0, "Uri"), "plain text")
    assert_refused(await alice.post("/api/ciphers", bad_pascal), "login.uris[0].uri")


async def test_each_field_at_its_limit_is_accepted_and_over_it_refused(alice: BitwardenClient, events) -> None:
    items = {item["type"]: item for item in typed_items(alice)}
    for cipher_type, path, limit in LIMITS:
        at_limit = with_value(items[cipher_type], path, enc(limit))
        reply = await alice.post("/api/ciphers", at_limit)
        assert reply.status_code == 200, (path, reply.text[:300])
        await alice.delete(f"/api/ciphers/{reply.json()['id']}")
    await events.exactly(2 * len(LIMITS))
    before = await vault_bytes(alice)
    for cipher_type, path, limit in LIMITS:
        assert_refused(await alice.post("/api/ciphers", with_value(items[cipher_type], path, enc(limit + 4))),
                       field_name(path))
    assert await vault_bytes(alice) == before
    await events.nothing()


@pytest.mark.parametrize("bad", [
    "plain text", "2.a|b|c", "2.QUFB|QUFB", "2.QUFB|QUFB|QUFB|QUFB", "9.QUFB|QUFB|QUFB", "2.QUFBQ|QUFB|QUFB",
    "2.====|QUFB|QUFB", "2.QU FB|QUFB|QUFB", "", 7, True, ["2.QUFB|QUFB|QUFB"], {"a": 1}])
async def test_malformed_encrypted_strings_are_refused(alice: BitwardenClient, events, bad: Any) -> None:
    items = {item["type"]: item for item in typed_items(alice)}
    before = await vault_bytes(alice)
    for path in (("name",), ("notes",), ("fields", 0, "value"), ("passwordHistory", 0, "password"),
                 ("login", "uris", 0, "uri"), ("login", "fido2Credentials", 0, "keyValue"), ("key",)):
        assert_refused(await alice.post("/api/ciphers", with_value(items[1], path, bad)), field_name(path))
    assert_refused(await alice.post("/api/ciphers", with_value(items[3], ("card", "number"), bad)), "card.number")
    assert_refused(await alice.post("/api/folders", {"name": bad}), "name")
    assert await vault_bytes(alice) == before
    await events.nothing()


async def test_malformed_item_parts_are_refused(alice: BitwardenClient, events) -> None:
    item = full_login(alice)
    before = await vault_bytes(alice)
    for path, value, field in (
        (("fields", 0), "text", "fields[0]"),
        (("fields", 0, "type"), "0", "fields[0].type"),
        (("fields", 0, "linkedId"), 2**40, "fields[0].linkedId"),
        (("passwordHistory", 0, "lastUsedDate"), None, "passwordHistory[0].lastUsedDate"),
        (("passwordHistory", 0, "lastUsedDate"), "yesterday", "passwordHistory[0].lastUsedDate"),
        (("passwordHistory", 0, "password"), None, "passwordHistory[0].password"),
        (("login", "uris"), {"uri": "x"}, "login.uris"),
        (("login", "uris", 1), None, "login.uris[1]"),
        (("login", "uris", 1, "match"), "exact", "login.uris[1].match"),
        (("login", "passwordRevisionDate"), "soon", "login.passwordRevisionDate"),
        (("login", "autofillOnPageLoad"), "yes", "login.autofillOnPageLoad"),
        (("login", "fido2Credentials", 0, "creationDate"), None, "login.fido2Credentials[0].creationDate"),
        (("secureNote",), {"type": "note"}, "secureNote.type"),
    ):
        assert_refused(await alice.post("/api/ciphers", with_value(item, path, value)), field)
    assert await vault_bytes(alice) == before
    await events.nothing()


async def test_item_larger_than_bitwarden_allows_is_refused(alice: BitwardenClient, events) -> None:
    # each field within its own limit, 100 of them: 600000 characters, over the 500000 of an item
    crowded = {**alice.login_item("crowded"),
               "fields": [{"type": 0, "name": None, "value": enc(5000), "linkedId": None}] * 100}
    assert_refused(await alice.post("/api/ciphers", crowded), "data")
    assert (await alice.get("/api/ciphers")).json()["data"] == []
    await events.nothing()


async def test_huge_notes_never_reach_the_vault(alice: BitwardenClient, events) -> None:
    """Three items of 30 MB notes once made one sync of 180 MiB."""
    auth = {"Authorization": f"Bearer {alice.access_token}"}
    for _ in range(3):
        body = json.dumps({**alice.login_item("big"), "notes": enc(30_000_000)}).encode()
        reply = await send_start_of(alice.base_url, "/api/ciphers", "application/json", len(body),
                                    start=body[:65536], headers=auth)
        assert reply.status == 413
    assert (await alice.get("/api/ciphers")).json()["data"] == []
    await events.nothing()


async def test_import_names_the_refused_field_and_stores_nothing(alice: BitwardenClient, events, db) -> None:
    good = alice.login_item("ok")
    for body, field in (
        ({"ciphers": [good, {**good, "notes": enc(10_004)}], "folders": []}, "ciphers[1].notes"),
        ({"ciphers": [good], "folders": [{"name": alice.encrypt("F")}, {"name": "plain"}]}, "folders[1].name"),
        ({"ciphers": [good], "folders": [{"name": enc(1004)}]}, "folders[0].name"),
        ({"ciphers": [good], "folders": [], "folderRelationships": [{"key": 0, "value": 0}] * 2},
         "folderRelationships"),
    ):
        assert_refused(await alice.post("/api/ciphers/import", body), field)
        # each counted against the pace of imports (IMPORT_RATELIMIT_*): the operator lifts it
        await db.execute("DELETE FROM login_limits WHERE scope = 'import'")
    await events.nothing()
    assert await db.fetchval("SELECT count(*) FROM ciphers") == 0
    assert await db.fetchval("SELECT count(*) FROM folders") == 0


async def test_items_per_user_are_capped(database_url: str, new_client, db) -> None:
    async with running_api(database_url, max_items_per_user=3) as url:
        client = new_client()
        client.base_url, client.http.base_url = url, url
        await client.register("full@example.com", PASSWORD)
        await client.login()
        ids = [(await client.post("/api/ciphers", client.login_item(f"n{n}"))).json()["id"] for n in range(3)]
        refused = await client.post("/api/ciphers", client.login_item("one too many"))
        assert refused.status_code == 400 and refused.json()["object"] == "error"
        wrapped = await client.post("/api/ciphers/create", {"cipher": client.login_item("x"), "collectionIds": []})
        assert wrapped.status_code == 400
        await client.delete(f"/api/ciphers/{ids[0]}")
        imported = await client.post("/api/ciphers/import", {
            "ciphers": [client.login_item("a"), client.login_item("b")], "folders": [], "folderRelationships": []})
        assert imported.status_code == 400 and imported.json()["object"] == "error"
        assert await db.fetchval("SELECT count(*) FROM ciphers") == 2
        assert (await client.post("/api/ciphers", client.login_item("fits again"))).status_code == 200
