"""Prelogin, the token endpoint (password and refresh grants) and registration."""

from __future__ import annotations

import base64
import json

import httpx

from tests.support.bwclient import TEST_ITERATIONS, BitwardenClient
from tests.vaultapi.conftest import PASSWORD, running_api
from vaultapi.stand_in import ARGON2ID_DEFAULTS, PBKDF2_DEFAULTS


def jwt_claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


async def test_prelogin_routes_answer_the_account_kdf(alice: BitwardenClient) -> None:
    for path in ("/identity/accounts/prelogin/password", "/identity/accounts/prelogin", "/api/accounts/prelogin"):
        reply = await alice.http.post(path, json={"email": "ALICE@example.com"})
        assert reply.status_code == 200
        assert reply.json() == {
            "kdfSettings": {"kdfType": 0, "iterations": TEST_ITERATIONS, "memory": None, "parallelism": None},
            "salt": "alice@example.com",
            "kdf": 0, "kdfIterations": TEST_ITERATIONS, "kdfMemory": None, "kdfParallelism": None,
        }


async def test_prelogin_of_unknown_email_gives_a_default_kdf(api: str) -> None:
    async with httpx.AsyncClient(base_url=api) as http:
        reply = await http.post("/identity/accounts/prelogin/password", json={"email": "nobody@example.com"})
        assert reply.json()["kdfSettings"] in (PBKDF2_DEFAULTS, ARGON2ID_DEFAULTS)
        missing = await http.post("/identity/accounts/prelogin/password", json={})
        assert missing.status_code == 400 and missing.json()["object"] == "error"


async def test_password_login_reply_has_every_field_the_cli_reads(alice: BitwardenClient) -> None:
    tokens = alice.tokens
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] > 300
    assert tokens["refresh_token"]
    assert tokens["Key"].startswith("2.") and tokens["PrivateKey"].startswith("2.")
    assert (tokens["Kdf"], tokens["KdfIterations"], tokens["KdfMemory"], tokens["KdfParallelism"]) == (
        0, TEST_ITERATIONS, None, None)
    unlock = tokens["UserDecryptionOptions"]["MasterPasswordUnlock"]
    assert tokens["UserDecryptionOptions"]["HasMasterPassword"] is True
    assert unlock["Kdf"] == {"KdfType": 0, "Iterations": TEST_ITERATIONS, "Memory": None, "Parallelism": None}
    assert unlock["MasterKeyEncryptedUserKey"] == tokens["Key"] and unlock["Salt"] == "alice@example.com"
    pair = tokens["AccountKeys"]["publicKeyEncryptionKeyPair"]
    assert pair["wrappedPrivateKey"] == tokens["PrivateKey"] and pair["publicKey"]
    claims = jwt_claims(alice.access_token)
    profile = (await alice.get("/api/accounts/profile")).json()
    assert claims["sub"] == profile["id"]
    assert claims["email"] == "alice@example.com" and claims["name"] == "Alice"
    assert claims["email_verified"] is True and claims["premium"] is False
    assert claims["device"] == alice.device and claims["client_id"] == "cli"
    assert claims["sstamp"] == profile["securityStamp"]
    assert claims["iss"] == "https://vault.test|login" and claims["exp"] > claims["nbf"]


async def test_wrong_password_is_invalid_grant(alice: BitwardenClient) -> None:
    reply = await alice.request_token(password="not it")
    assert reply.status_code == 400
    assert reply.json()["error"] == "invalid_grant"
    assert "incorrect" in reply.json()["error_description"]


async def test_unknown_user_and_missing_fields_are_refused(api: str) -> None:
    async with httpx.AsyncClient(base_url=api) as http:
        unknown = await http.post("/identity/connect/token", data={
            "grant_type": "password", "username": "nobody@example.com", "password": "x", "client_id": "cli",
            "deviceType": "25", "deviceIdentifier": "d", "deviceName": "n", "scope": "api offline_access"})
        assert unknown.status_code == 400 and unknown.json()["error"] == "invalid_grant"
        incomplete = await http.post("/identity/connect/token", data={"grant_type": "password"})
        assert incomplete.status_code == 400 and incomplete.json()["error"] == "invalid_request"
        odd = await http.post("/identity/connect/token", data={"grant_type": "authorization_code"})
        assert odd.json()["error"] == "unsupported_grant_type"
        as_json = await http.post("/identity/connect/token", json={"grant_type": "password"})
        assert as_json.status_code == 400


async def test_refresh_token_rotates_and_works_once(alice: BitwardenClient) -> None:
    first = alice.tokens["refresh_token"]
    reply = await alice.refresh()
    assert reply.status_code == 200
    assert reply.json()["refresh_token"] != first
    assert jwt_claims(reply.json()["access_token"])["device"] == alice.device
    assert (await alice.get("/api/sync")).status_code == 200
    alice.tokens["refresh_token"] = first
    replay = await alice.refresh()
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"


async def test_register_twice_is_refused(new_client) -> None:
    client = new_client()
    await client.register("carol@example.com", PASSWORD)
    again = new_client()
    try:
        await again.register("Carol@Example.com", PASSWORD)
    except httpx.HTTPStatusError as error:
        assert error.response.status_code == 400
        assert error.response.json()["object"] == "error"
    else:
        raise AssertionError("a second account with the same email was created")


async def test_register_with_bad_input_is_400_and_creates_nothing(api: str, db) -> None:
    async with httpx.AsyncClient(base_url=api) as http:
        for body in (
            {"email": "x@example.com"},
            {"email": "not an email", "masterPasswordHash": "h", "key": "2.k", "kdfIterations": 600000},
            {"email": "x@example.com", "masterPasswordHash": "h", "key": "2.k", "kdfIterations": 10},
            {"email": "x@example.com", "masterPasswordHash": 5, "key": "2.k"},
        ):
            reply = await http.post("/identity/accounts/register", json=body)
            assert reply.status_code == 400, body
        broken = await http.post("/identity/accounts/register", content=b"{not json",
                                 headers={"content-type": "application/json"})
        assert broken.status_code == 400 and broken.json()["message"]
    assert await db.fetchval("SELECT count(*) FROM users") == 0


async def test_verification_email_then_finish_creates_a_working_account(api: str, new_client) -> None:
    client = new_client()
    from vaultapi.clientcrypto import make_account_keys

    keys = make_account_keys("dave@example.com", PASSWORD, TEST_ITERATIONS)
    token = await client.http.post("/identity/accounts/register/send-verification-email",
                                   json={"email": "dave@example.com", "name": "Dave"})
    assert token.status_code == 200 and isinstance(token.json(), str)
    finish = {
        "email": "dave@example.com", "emailVerificationToken": token.json(),
        "masterPasswordHash": keys.master_password_hash, "userSymmetricKey": keys.key,
        "userAsymmetricKeys": {"publicKey": keys.public_key, "encryptedPrivateKey": keys.encrypted_private_key},
        "kdf": 0, "kdfIterations": TEST_ITERATIONS,
    }
    wrong = await client.http.post("/identity/accounts/register/finish",
                                   json={**finish, "email": "eve@example.com"})
    assert wrong.status_code == 400
    forged = await client.http.post("/identity/accounts/register/finish",
                                    json={**finish, "emailVerificationToken": "x.y.z"})
    assert forged.status_code == 400
    done = await client.http.post("/identity/accounts/register/finish", json=finish)
    assert done.status_code == 200
    await client.login("dave@example.com", PASSWORD)
    assert (await client.get("/api/accounts/profile")).json()["name"] == "Dave"


async def test_signups_disallowed_refuses_every_registration_route(database_url: str) -> None:
    async with running_api(database_url, signups_allowed=False) as url:
        client = BitwardenClient(url)
        async with client:
            config = (await client.http.get("/api/config")).json()
            assert config["settings"]["disableUserRegistration"] is True
            try:
                await client.register("erin@example.com", PASSWORD)
            except httpx.HTTPStatusError as error:
                assert error.response.status_code == 400
            else:
                raise AssertionError("registered although signups are off")
            send = await client.http.post("/identity/accounts/register/send-verification-email",
                                          json={"email": "erin@example.com"})
            assert send.status_code == 400
            finish = await client.http.post("/identity/accounts/register/finish",
                                            json={"email": "erin@example.com"})
            assert finish.status_code == 400
