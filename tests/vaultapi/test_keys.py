"""The API signs with the newest key and accepts every key still verifying, without a restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta

import jwt
import pytest

from core.access import access_claims
from core.config import Config
from core.keystore import load_signing_key, rotate
from core.tokens import TokenIssuer
from tests.support.bwclient import BitwardenClient
from tests.support.serve import serve
from tests.vaultapi.conftest import PASSWORD
from vaultapi.app import create_app


def kid_of(token: str) -> str:
    return jwt.get_unverified_header(token)["kid"]


@pytest.fixture
async def quick_api(database_url: str) -> AsyncIterator[str]:
    """The API re-reading its keys every 0.1 s (production: every 30 s)."""
    config = Config(database_url=database_url, domain="https://vault.test")
    served = await serve(create_app(config, key_refresh_interval=0.1))
    try:
        yield served.url
    finally:
        await served.stop()


async def test_api_signs_with_a_rotated_key_and_still_accepts_older_tokens(quick_api: str, db) -> None:
    async with BitwardenClient(quick_api) as alice:
        await alice.register("alice@example.com", PASSWORD)
        await alice.login()
        before = alice.access_token
        new = await rotate(db, grace=timedelta(hours=1))
        deadline = time.monotonic() + 10
        while kid_of(alice.access_token) != new and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            assert (await alice.refresh()).status_code == 200
        assert kid_of(alice.access_token) == new, "the API signs with the new key"
        assert (await alice.get("/api/accounts/profile")).status_code == 200
        alice.tokens["access_token"] = before
        assert (await alice.get("/api/accounts/profile")).status_code == 200, "the old key still verifies"


async def test_api_accepts_a_token_of_a_key_another_replica_signs_with(api: str, alice: BitwardenClient, db) -> None:
    await rotate(db, grace=timedelta(hours=1))
    # what a replica that already re-read its keys issues
    other_replica = TokenIssuer(await load_signing_key(db, None), "https://vault.test|login", 600)
    user = await db.fetchrow("SELECT * FROM users WHERE email = 'alice@example.com'")
    alice.tokens["access_token"] = other_replica.issue(access_claims(user, alice.device, "cli"))
    assert (await alice.get("/api/accounts/profile")).status_code == 200


async def test_api_refuses_a_token_without_a_key_id(alice: BitwardenClient, db) -> None:
    claims = jwt.decode(alice.access_token, options={"verify_signature": False})
    key = await load_signing_key(db, None)
    alice.tokens["access_token"] = jwt.encode(claims, key.private_key, algorithm="RS256")
    assert (await alice.get("/api/accounts/profile")).status_code == 401
