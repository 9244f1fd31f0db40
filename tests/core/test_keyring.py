"""A running app's keys follow the database: rotations and retirements need no restart."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import jwt
import pytest

from core.keyring import KeyRing
from core.keystore import ensure_signing_key, rotate
from core.tokens import SigningKeyError, TokenError, UnknownKeyId
from tests.wshub.support import eventually

ISSUER = "https://vault.test|login"
CLAIMS = {"sub": "7c1e1b8e-7c2d-4a55-9d6c-0f0d0c7a8b11"}


def kid_of(token: str) -> str:
    return jwt.get_unverified_header(token)["kid"]


async def test_verifier_learns_a_key_made_after_it_loaded(db) -> None:
    signer = KeyRing(db, signs=True)
    await signer.load()
    hub = KeyRing(db)
    await hub.load()
    await rotate(db, grace=timedelta(hours=1))
    await signer.refresh()
    token = signer.issuer(ISSUER, 600).issue(CLAIMS)
    assert (await hub.verifier(ISSUER).verify(token))["sub"] == CLAIMS["sub"]


async def test_reloads_for_unknown_kids_are_rate_limited(db) -> None:
    hub = KeyRing(db, miss_interval=60.0)
    await hub.load()
    verifier = hub.verifier(ISSUER)
    signer = KeyRing(db, signs=True)
    await signer.load()
    issuer = signer.issuer(ISSUER, 600)

    await rotate(db, grace=timedelta(hours=1))
    await signer.refresh()
    assert await verifier.verify(issuer.issue(CLAIMS)), "the first unknown kid reloads"
    await rotate(db, grace=timedelta(hours=1))
    await signer.refresh()
    with pytest.raises(UnknownKeyId):
        await verifier.verify(issuer.issue(CLAIMS))  # within the interval: no second reload
    await hub.refresh()
    assert await verifier.verify(issuer.issue(CLAIMS)), "the periodic refresh finds it"


async def test_many_requests_with_one_new_kid_share_one_reload(db) -> None:
    hub = KeyRing(db, miss_interval=60.0)
    await hub.load()
    signer = KeyRing(db, signs=True)
    await signer.load()
    await rotate(db, grace=timedelta(hours=1))
    await signer.refresh()
    token = signer.issuer(ISSUER, 600).issue(CLAIMS)
    verifier = hub.verifier(ISSUER)
    results = await asyncio.gather(*(verifier.verify(token) for _ in range(20)))
    assert all(claims["sub"] == CLAIMS["sub"] for claims in results)


async def test_refresh_moves_every_issuer_to_the_new_signing_key(db) -> None:
    ring = KeyRing(db, signs=True)
    await ring.load()
    login, register = ring.issuer(ISSUER, 600), ring.issuer("https://vault.test|register", 3600)
    before = login.issue(CLAIMS)
    new = await rotate(db, grace=timedelta(hours=1))
    await ring.refresh()
    assert kid_of(login.issue(CLAIMS)) == kid_of(register.issue(CLAIMS)) == new
    assert await ring.verifier(ISSUER).verify(before), "the old key still verifies"


async def test_keep_fresh_drops_a_key_retired_at_once(db) -> None:
    ring = KeyRing(db, signs=True, refresh_interval=0.05)
    await ring.load()
    verifier = ring.verifier(ISSUER)
    old_token = ring.issuer(ISSUER, 600).issue(CLAIMS)
    refreshing = asyncio.create_task(ring.keep_fresh())
    try:
        await rotate(db, grace=timedelta(0))

        def refused() -> bool:
            try:
                verifier.check(old_token)
            except TokenError:
                return True
            return False

        await eventually(refused, "the retired key to stop verifying", timeout=10)
    finally:
        refreshing.cancel()
        await asyncio.gather(refreshing, return_exceptions=True)


async def test_keep_fresh_survives_a_failed_refresh(db, caplog) -> None:
    ring = KeyRing(db, signs=True, refresh_interval=0.05)
    await ring.load()
    issuer = ring.issuer(ISSUER, 600)
    kid = kid_of(issuer.issue(CLAIMS))
    await db.execute("ALTER TABLE token_public_keys RENAME TO token_public_keys_away")
    refreshing = asyncio.create_task(ring.keep_fresh())
    try:
        await eventually(lambda: "cannot refresh the token keys" in caplog.text, "a logged refresh failure", 10)
        assert kid_of(issuer.issue(CLAIMS)) == kid, "still signing with the key it had"
        await db.execute("ALTER TABLE token_public_keys_away RENAME TO token_public_keys")
        new = await rotate(db, grace=timedelta(hours=1))
        await eventually(lambda: kid_of(issuer.issue(CLAIMS)) == new, "the refresh to work again", 10)
    finally:
        refreshing.cancel()
        await asyncio.gather(refreshing, return_exceptions=True)


async def test_signing_ring_of_an_encrypted_database_needs_the_passphrase(db) -> None:
    await db.execute("DELETE FROM token_public_keys")
    await ensure_signing_key(db, "correct horse")
    with pytest.raises(SigningKeyError, match="SIGNING_KEY_PASSPHRASE"):
        await KeyRing(db, signs=True).load()
    await KeyRing(db, signs=True, passphrase="correct horse").load()
    await KeyRing(db).load(), "verifying needs no passphrase"


async def test_a_passphrase_for_a_plain_key_is_a_warning(db, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        await KeyRing(db, signs=True, passphrase="correct horse").load()
    assert "unencrypted" in caplog.text and "pgwarden keys rotate" in caplog.text
    assert "correct horse" not in caplog.text


async def test_ring_of_a_database_without_keys_says_run_migrate(db) -> None:
    await db.execute("DELETE FROM token_public_keys")
    with pytest.raises(SigningKeyError, match="pgwarden migrate"):
        await KeyRing(db).load()
