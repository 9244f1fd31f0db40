"""Two-step login with an authenticator app and the recovery code: setup, the token endpoint's
challenge, remembered devices, and codes that are wrong, reused or stale."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import asyncpg
import pyotp

from tests.support.bwclient import BitwardenClient
from tests.vaultapi.conftest import PASSWORD, running_api


async def enable_authenticator(client: BitwardenClient) -> pyotp.TOTP:
    """What the web vault does: read a key with the password, confirm it with a code."""
    got = await client.post("/api/two-factor/get-authenticator", {"masterPasswordHash": client.password_hash()})
    assert got.status_code == 200, got.text
    body = got.json()
    assert (body["enabled"], body["object"], len(body["key"])) == (False, "twoFactorAuthenticator", 32)
    totp = pyotp.TOTP(body["key"])
    # the code of the step before: now's stays free for a login (a used code is refused)
    put = await client.put("/api/two-factor/authenticator", {
        "key": body["key"], "token": previous_code(totp, 1), "userVerificationToken": body["userVerificationToken"]})
    assert put.status_code == 200, put.text
    assert put.json()["enabled"] is True
    return totp


def previous_code(totp: pyotp.TOTP, steps: int) -> str:
    """The code of `steps` 30 s steps ago (negative: ahead)."""
    return totp.at(time.time() - 30 * steps)


async def test_authenticator_login_needs_a_fresh_code(
    alice: BitwardenClient, new_client: Callable[..., BitwardenClient], db: asyncpg.Connection
) -> None:
    profile = (await alice.get("/api/accounts/profile")).json()
    assert profile["twoFactorEnabled"] is False
    totp = await enable_authenticator(alice)
    assert (await alice.get("/api/accounts/profile")).json()["twoFactorEnabled"] is True
    listed = (await alice.get("/api/two-factor")).json()["data"]
    assert listed == [{"enabled": True, "type": 0, "object": "twoFactorProvider"}]

    laptop = new_client()
    laptop.email, laptop.password = alice.email, PASSWORD
    devices_before = await db.fetchval("SELECT count(*) FROM devices")

    challenge = await laptop.request_token()
    assert challenge.status_code == 400
    body = challenge.json()
    assert (body["error"], body["error_description"]) == ("invalid_grant", "Two factor required.")
    assert body["TwoFactorProviders"] == ["0"] and body["TwoFactorProviders2"] == {"0": None}
    assert "access_token" not in body

    wrong = await laptop.request_token(two_factor=(0, "000000" if totp.now() != "000000" else "111111"))
    assert wrong.status_code == 400 and wrong.json()["error_description"] == "Two-step token is invalid. Try again."
    stale = await laptop.request_token(two_factor=(0, previous_code(totp, 3)))
    assert stale.status_code == 400
    assert await db.fetchval("SELECT count(*) FROM devices") == devices_before  # nothing signed in

    # one step of drift is accepted, as the Bitwarden server does (setup used the step before)
    code = previous_code(totp, -1)
    ok = await laptop.request_token(two_factor=(0, code))
    assert ok.status_code == 200, ok.text
    assert "TwoFactorToken" not in ok.json()
    assert await db.fetchval("SELECT count(*) FROM devices") == devices_before + 1

    # the same code again, even from another device, is refused for two minutes
    phone = new_client()
    phone.email, phone.password = alice.email, PASSWORD
    replay = await phone.request_token(two_factor=(0, code))
    assert replay.status_code == 400 and replay.json()["error_description"] == "Two-step token is invalid. Try again."


async def test_a_remembered_device_skips_the_second_step_until_the_stamp_changes(
    alice: BitwardenClient, new_client: Callable[..., BitwardenClient]
) -> None:
    totp = await enable_authenticator(alice)
    laptop = new_client()
    laptop.email, laptop.password = alice.email, PASSWORD
    first = await laptop.request_token(two_factor=(0, totp.now()), remember=True)
    assert first.status_code == 200, first.text
    remember = first.json()["TwoFactorToken"]

    again = await laptop.request_token(two_factor=(5, remember))
    assert again.status_code == 200, again.text
    assert "TwoFactorToken" not in again.json()

    # another device cannot use it: it gets the challenge, not a refusal
    other = new_client()
    other.email, other.password = alice.email, PASSWORD
    stolen = await other.request_token(two_factor=(5, remember))
    assert stolen.status_code == 400 and stolen.json()["TwoFactorProviders2"] == {"0": None}

    # a new security stamp ends every remembered device
    assert (await alice.post("/api/accounts/security-stamp", {"masterPasswordHash": alice.password_hash()})
            ).status_code == 200
    later = await laptop.request_token(two_factor=(5, remember))
    assert later.status_code == 400 and "TwoFactorProviders2" in later.json()


async def test_the_recovery_code_turns_two_step_login_off_once(
    alice: BitwardenClient, new_client: Callable[..., BitwardenClient], db: asyncpg.Connection
) -> None:
    await enable_authenticator(alice)
    recover = await alice.post("/api/two-factor/get-recover", {"masterPasswordHash": alice.password_hash()})
    assert recover.status_code == 200
    code = recover.json()["code"]
    assert len(code) == 32 and code.isalnum() and code == code.lower()

    bad = await alice.post("/api/two-factor/get-recover", {"masterPasswordHash": alice.password_hash("wrong")})
    assert bad.status_code == 400 and "code" not in bad.json()

    laptop = new_client()
    laptop.email, laptop.password = alice.email, PASSWORD
    wrong = await laptop.request_token(two_factor=(8, "a" * 32))
    assert wrong.status_code == 400
    assert await db.fetchval("SELECT two_factor_providers <> '{}' FROM users WHERE email = $1", alice.email)

    ok = await laptop.request_token(two_factor=(8, code.upper()[:16] + " " + code[16:]))
    assert ok.status_code == 200, ok.text
    row = await db.fetchrow("SELECT * FROM users WHERE email = $1", alice.email)
    assert row["two_factor_providers"] == "{}" and row["two_factor_recovery_code"] != code
    assert (await laptop.request_token()).status_code == 200  # no second step any more
    again = await new_client().http.post("/api/two-factor/recover", json={
        "email": alice.email, "masterPasswordHash": alice.password_hash(), "recoveryCode": code})
    assert again.status_code == 400


async def test_setup_refuses_what_it_cannot_trust(alice: BitwardenClient, bob: BitwardenClient,
                                                  db: asyncpg.Connection) -> None:
    got = (await alice.post("/api/two-factor/get-authenticator",
                            {"masterPasswordHash": alice.password_hash()})).json()
    totp = pyotp.TOTP(got["key"])
    # a wrong password, a wrong code, another key than the token's, another user's token
    assert (await alice.post("/api/two-factor/get-authenticator",
                             {"masterPasswordHash": alice.password_hash("nope")})).status_code == 400
    cases = [
        {"key": got["key"], "token": "123", "userVerificationToken": got["userVerificationToken"]},
        {"key": pyotp.random_base32(32), "token": totp.now(), "userVerificationToken": got["userVerificationToken"]},
        {"key": got["key"], "token": totp.now(), "userVerificationToken": "not-a-token"},
        {"key": got["key"], "token": totp.now()},
    ]
    for body in cases:
        refused = await alice.put("/api/two-factor/authenticator", body)
        assert refused.status_code == 400, (body, refused.text)
    stolen = await bob.put("/api/two-factor/authenticator", {
        "key": got["key"], "token": totp.now(), "userVerificationToken": got["userVerificationToken"]})
    assert stolen.status_code == 400
    assert await db.fetchval("SELECT count(*) FROM users WHERE two_factor_providers <> '{}'") == 0
    assert (await alice.put("/api/two-factor/authenticator", {"key": got["key"], "token": totp.now()})
            ).status_code == 400  # neither token nor password

    # older clients: the master password instead of the token, and PUT disable
    enabled = await alice.put("/api/two-factor/authenticator", {
        "key": got["key"], "token": totp.now(), "masterPasswordHash": alice.password_hash()})
    assert enabled.status_code == 200, enabled.text
    off = await alice.put("/api/two-factor/disable", {"type": 0, "masterPasswordHash": alice.password_hash()})
    assert off.status_code == 200 and off.json() == {"enabled": False, "type": 0, "object": "twoFactorProvider"}
    assert (await alice.get("/api/accounts/profile")).json()["twoFactorEnabled"] is False


async def test_guessing_codes_counts_against_the_login_limits(database_url: str) -> None:
    """The right password does not refill the account's attempts until the second step passed."""
    async with running_api(database_url, login_ratelimit_max_burst=4) as url:
        async with BitwardenClient(url) as alice, BitwardenClient(url, local_address="127.0.0.2") as guesser:
            await alice.register("alice@example.com", PASSWORD)
            await alice.login()
            totp = await enable_authenticator(alice)
            guesser.email, guesser.password = alice.email, PASSWORD
            wrong = "000000" if totp.now() != "000000" else "111111"
            statuses = [(await guesser.request_token(two_factor=(0, wrong))).status_code for _ in range(4)]
            assert statuses[:2] == [400, 400] and statuses[-1] == 429, statuses
            # even the right code waits now: the account's attempts are spent
            late = await guesser.request_token(two_factor=(0, totp.now()))
            assert late.status_code == 429 and int(late.headers["Retry-After"]) > 0


async def test_a_code_used_on_one_replica_is_refused_on_another(database_url: str) -> None:
    async with running_api(database_url) as one, running_api(database_url) as two:
        async with BitwardenClient(one) as alice, BitwardenClient(one) as laptop, BitwardenClient(two) as phone:
            await alice.register("alice@example.com", PASSWORD)
            await alice.login()
            totp = await enable_authenticator(alice)
            for device in (laptop, phone):
                device.email, device.password = alice.email, PASSWORD
            code = totp.now()
            # both at once: exactly one of them gets in
            first, second = await asyncio.gather(laptop.request_token(two_factor=(0, code)),
                                                 phone.request_token(two_factor=(0, code)))
            assert sorted([first.status_code, second.status_code]) == [200, 400]
