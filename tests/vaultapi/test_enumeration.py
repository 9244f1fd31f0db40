"""What prelogin and registration tell about who has an account."""

from __future__ import annotations

import httpx

from tests.vaultapi.conftest import PASSWORD, running_api
from vaultapi.clientcrypto import make_account_keys
from vaultapi.stand_in import ARGON2ID_DEFAULTS, PBKDF2_DEFAULTS, stand_in_kdf

PRELOGIN = "/identity/accounts/prelogin/password"
UNKNOWN = [f"nobody{number}@example.com" for number in range(128)]


async def prelogin(http: httpx.AsyncClient, email: str) -> dict:
    reply = await http.post(PRELOGIN, json={"email": email})
    assert reply.status_code == 200
    return reply.json()


def shape(reply: dict) -> dict:
    """The keys of a prelogin reply with the type of each value."""
    return {key: (shape(value) if isinstance(value, dict) else type(value).__name__) for key, value in reply.items()}


async def register_argon2(http: httpx.AsyncClient, email: str) -> None:
    keys = make_account_keys(email, PASSWORD, 100_000)
    reply = await http.post("/identity/accounts/register", json={
        "email": email, "masterPasswordHash": keys.master_password_hash, "key": keys.key,
        "kdf": 1, "kdfIterations": 3, "kdfMemory": 64, "kdfParallelism": 4,
        "keys": {"publicKey": keys.public_key, "encryptedPrivateKey": keys.encrypted_private_key}})
    assert reply.status_code == 200, reply.text


async def test_prelogin_of_an_unknown_email_is_stable_and_looks_like_an_account(api: str) -> None:
    async with httpx.AsyncClient(base_url=api) as http:
        await register_argon2(http, "argon@example.com")
        real = await prelogin(http, "argon@example.com")
        replies = {email: await prelogin(http, email) for email in UNKNOWN}
        for email, reply in replies.items():
            assert reply == await prelogin(http, email.upper()), "the same email answers the same"
            assert reply["salt"] == email
            assert reply["kdfSettings"] in (PBKDF2_DEFAULTS, ARGON2ID_DEFAULTS)
            settings = reply["kdfSettings"]
            assert (reply["kdf"], reply["kdfIterations"], reply["kdfMemory"], reply["kdfParallelism"]) == (
                settings["kdfType"], settings["iterations"], settings["memory"], settings["parallelism"])
        kinds = [reply["kdfSettings"]["kdfType"] for reply in replies.values()]
        assert 0 in kinds and 1 in kinds, "unknown emails look like accounts of either kind"
        argon2_looking = next(reply for reply in replies.values() if reply["kdfSettings"]["kdfType"] == 1)
        assert shape(argon2_looking) == shape(real)
        assert argon2_looking["kdfSettings"] == real["kdfSettings"]


async def test_prelogin_stand_ins_depend_on_the_server_secret(database_url: str, db) -> None:
    async with running_api(database_url) as url, httpx.AsyncClient(base_url=url) as http:
        before = [await prelogin(http, email) for email in UNKNOWN]
    await db.execute("UPDATE server_secrets SET value = gen_random_uuid()::text::bytea WHERE name = 'prelogin'")
    async with running_api(database_url) as url, httpx.AsyncClient(base_url=url) as http:
        after = [await prelogin(http, email) for email in UNKNOWN]
    assert before != after


def test_stand_in_is_a_keyed_function_of_the_lowercased_email() -> None:
    first, second = b"1" * 32, b"2" * 32
    assert stand_in_kdf(first, " Nobody@Example.com ") == stand_in_kdf(first, "nobody@example.com")
    assert [stand_in_kdf(first, email) for email in UNKNOWN] != [stand_in_kdf(second, email) for email in UNKNOWN]
    share = sum(stand_in_kdf(first, email)["kdfType"] == 1 for email in UNKNOWN) / len(UNKNOWN)
    assert 0 < share < 0.5


async def test_verification_email_answers_alike_for_taken_and_free_emails(api: str) -> None:
    async with httpx.AsyncClient(base_url=api) as http:
        await register_argon2(http, "taken@example.com")
        replies = [await http.post("/identity/accounts/register/send-verification-email", json={"email": email})
                   for email in ("taken@example.com", "free@example.com")]
        assert [reply.status_code for reply in replies] == [200, 200]
        assert all(isinstance(reply.json(), str) for reply in replies)


async def test_registering_a_taken_email_is_refused_without_echoing_it(api: str) -> None:
    async with httpx.AsyncClient(base_url=api) as http:
        await register_argon2(http, "taken@example.com")
        keys = make_account_keys("Taken@Example.com", PASSWORD, 100_000)
        reply = await http.post("/identity/accounts/register", json={
            "email": "Taken@Example.com", "masterPasswordHash": keys.master_password_hash, "key": keys.key,
            "kdf": 0, "kdfIterations": 100_000})
        assert reply.status_code == 400
        assert "taken" not in reply.text.lower() and "example" not in reply.text.lower()


async def test_registrations_from_one_address_are_limited(database_url: str) -> None:
    async with running_api(database_url, login_ratelimit_max_burst=2) as url, httpx.AsyncClient(base_url=url) as http:
        for number in range(2):
            await register_argon2(http, f"new{number}@example.com")
        keys = make_account_keys("late@example.com", PASSWORD, 100_000)
        reply = await http.post("/identity/accounts/register", json={
            "email": "late@example.com", "masterPasswordHash": keys.master_password_hash, "key": keys.key})
        assert reply.status_code == 429 and int(reply.headers["retry-after"]) >= 1
        assert reply.json()["object"] == "error"
