"""A FIDO2 security key as the second step (python-fido2 on the server, a software key built
from python-fido2's types in the test): registration, login, and answers that must fail."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest

from tests.support.bwclient import BitwardenClient
from tests.support.fido import SoftKey
from tests.vaultapi.conftest import PASSWORD, client_factory, registered, running_api

ORIGIN = "https://vault.test"  # the DOMAIN of the test API


async def register_key(client: BitwardenClient, key: SoftKey, key_id: int = 1, name: str = "Blue key") -> dict:
    got = await client.post("/api/two-factor/get-webauthn", {"masterPasswordHash": client.password_hash()})
    assert got.status_code == 200, got.text
    token = got.json()["userVerificationToken"]
    challenge = await client.post("/api/two-factor/get-webauthn-challenge", {"userVerificationToken": token})
    assert challenge.status_code == 200, challenge.text
    options = challenge.json()
    assert options["options"]["challenge"] == options["challenge"] and options["rp"]["id"] == "vault.test"
    put = await client.put("/api/two-factor/webauthn", {
        "id": key_id, "name": name, "deviceResponse": key.register(options), "userVerificationToken": token})
    assert put.status_code == 200, put.text
    return put.json()


def laptop_of(new_client: Callable[..., BitwardenClient], user: BitwardenClient) -> BitwardenClient:
    laptop = new_client()
    laptop.email, laptop.password = user.email, PASSWORD
    return laptop


async def test_a_security_key_is_the_second_step(
    alice: BitwardenClient, new_client: Callable[..., BitwardenClient], db: asyncpg.Connection
) -> None:
    key = SoftKey(ORIGIN)
    registered = await register_key(alice, key)
    assert registered["enabled"] is True and registered["keys"] == [{"name": "Blue key", "id": 1, "migrated": False}]
    assert (await alice.get("/api/accounts/profile")).json()["twoFactorEnabled"] is True

    laptop = laptop_of(new_client, alice)
    challenge = (await laptop.request_token()).json()
    options = challenge["TwoFactorProviders2"]["7"]
    assert challenge["TwoFactorProviders"] == ["7"] and options["rpId"] == "vault.test"
    assert options["allowCredentials"][0]["id"] == registered_id(key)

    ok = await laptop.request_token(two_factor=(7, key.sign(options)))
    assert ok.status_code == 200, ok.text

    # the same answer again: its challenge is used up
    again = await laptop.request_token(two_factor=(7, key.sign(options)))
    assert again.status_code == 400 and again.json()["error_description"] == "Two-step token is invalid. Try again."


def registered_id(key: SoftKey) -> str:
    from fido2.utils import websafe_encode

    return websafe_encode(key.credential_id)


@pytest.fixture
async def roomy_client(database_url: str) -> AsyncIterator[Callable[..., BitwardenClient]]:
    """Clients of an API that lets one address try many logins: each bad answer below costs two."""
    async with running_api(database_url, login_ratelimit_max_burst=100) as url, client_factory(url) as make:
        yield make


async def test_bad_answers_are_refused_and_change_nothing(
    roomy_client: Callable[..., BitwardenClient], db: asyncpg.Connection
) -> None:
    new_client = roomy_client
    alice = await registered(new_client, "alice@example.com", "Alice")
    key = SoftKey(ORIGIN)
    await register_key(alice, key)
    laptop = laptop_of(new_client, alice)

    async def fresh_options() -> dict:
        return (await laptop.request_token()).json()["TwoFactorProviders2"]["7"]

    # one login moves the key's counter to 1
    assert (await laptop.request_token(two_factor=(7, key.sign(await fresh_options())))).status_code == 200
    laptop = laptop_of(new_client, alice)
    devices_before = await db.fetchval("SELECT count(*) FROM devices")

    stranger = SoftKey(ORIGIN)
    stranger.credential_id = key.credential_id  # the right id, another private key
    phishing = SoftKey("https://vault.test.evil.example")
    phishing.private_key, phishing.credential_id = key.private_key, key.credential_id
    def replayed_counter(options: dict) -> str:
        key.counter = 0  # the stored counter is 1: an answer with 1 again is a cloned key's
        return key.sign(options)

    for what, answer in (
        ("another private key", stranger.sign),
        ("another origin", phishing.sign),
        ("another challenge", lambda o: key.sign(o, challenge="AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")),
        ("a counter that did not move", replayed_counter),
        ("not JSON", lambda o: "{not json"),
    ):
        refused = await laptop.request_token(two_factor=(7, answer(await fresh_options())))
        assert refused.status_code == 400, (what, refused.text[:60])
    assert await db.fetchval("SELECT count(*) FROM devices") == devices_before
    assert (await laptop.request_token(two_factor=(7, key.sign(await fresh_options())))).status_code == 200


async def test_registration_refuses_a_wrong_answer_and_keys_can_be_removed(alice: BitwardenClient) -> None:
    got = (await alice.post("/api/two-factor/get-webauthn", {"masterPasswordHash": alice.password_hash()})).json()
    token = got["userVerificationToken"]
    options = (await alice.post("/api/two-factor/get-webauthn-challenge", {"userVerificationToken": token})).json()
    wrong_origin = SoftKey("https://elsewhere.example").register(options)
    refused = await alice.put("/api/two-factor/webauthn", {"id": 1, "name": "x", "deviceResponse": wrong_origin,
                                                           "userVerificationToken": token})
    assert refused.status_code == 400
    # the challenge was used by that attempt: even a right answer to it is refused now
    late = await alice.put("/api/two-factor/webauthn", {"id": 1, "name": "x", "userVerificationToken": token,
                                                        "deviceResponse": SoftKey(ORIGIN).register(options)})
    assert late.status_code == 400
    assert (await alice.get("/api/accounts/profile")).json()["twoFactorEnabled"] is False

    await register_key(alice, SoftKey(ORIGIN), 1, "one")
    both = await register_key(alice, SoftKey(ORIGIN), 2, "two")
    assert [k["name"] for k in both["keys"]] == ["one", "two"]
    removed = await alice.delete("/api/two-factor/webauthn", {"id": 1, "userVerificationToken": token})
    assert removed.status_code == 200 and [k["id"] for k in removed.json()["keys"]] == [2]
    assert (await alice.delete("/api/two-factor/webauthn", {"id": 1, "userVerificationToken": token})).status_code == 400
    last = await alice.delete("/api/two-factor/webauthn", {"id": 2, "userVerificationToken": token})
    assert last.json()["enabled"] is False
    assert (await alice.get("/api/accounts/profile")).json()["twoFactorEnabled"] is False
