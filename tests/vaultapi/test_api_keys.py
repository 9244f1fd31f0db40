"""The personal API key: shown and rotated after the master password, and the client_credentials
grant that logs in with it (as `bw login --apikey` does); wrong secrets are limited like passwords."""

from __future__ import annotations

import asyncpg
import httpx

from tests.support.bwclient import BitwardenClient
from tests.vaultapi.conftest import user_id_of


async def api_key_login(client: BitwardenClient, client_id: str, secret: str, device: str = "cli-device"
                        ) -> httpx.Response:
    return await client.http.post("/identity/connect/token", data={
        "grant_type": "client_credentials", "client_id": client_id, "client_secret": secret, "scope": "api",
        "deviceType": "25", "deviceIdentifier": device, "deviceName": "linux"})


async def test_api_key_logs_in_without_a_refresh_token_and_unlocks_with_the_password(
    alice: BitwardenClient, db: asyncpg.Connection,
) -> None:
    wrong = await alice.post("/api/accounts/api-key", json={"masterPasswordHash": alice.password_hash("nope")})
    assert wrong.status_code == 400
    shown = await alice.post("/api/accounts/api-key", json={"masterPasswordHash": alice.password_hash()})
    assert shown.status_code == 200 and shown.json()["object"] == "apiKey"
    secret = shown.json()["apiKey"]
    assert len(secret) == 30 and secret.isalnum()
    # shown again, the same key
    again = await alice.post("/api/accounts/api-key", json={"masterPasswordHash": alice.password_hash()})
    assert again.json()["apiKey"] == secret

    client_id = f"user.{await user_id_of(alice)}"
    login = await api_key_login(alice, client_id, secret)
    assert login.status_code == 200, login.text
    tokens = login.json()
    assert "refresh_token" not in tokens and tokens["scope"] == "api"
    # the reply carries what unlocking needs: the wrapped user key and the KDF settings
    assert tokens["Key"] == alice.tokens["Key"] and tokens["KdfIterations"] == alice.iterations
    profile = await alice.http.get("/api/accounts/profile",
                                   headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert profile.status_code == 200 and profile.json()["email"] == alice.email
    device = await db.fetchrow("SELECT * FROM devices WHERE identifier = 'cli-device'")
    assert device["refresh_token_hash"] is None and device["name"] == "linux"


async def test_rotated_key_replaces_the_old_one(alice: BitwardenClient) -> None:
    client_id = f"user.{await user_id_of(alice)}"
    old = (await alice.post("/api/accounts/api-key", json={"masterPasswordHash": alice.password_hash()})).json()
    refused = await alice.post("/api/accounts/rotate-api-key", json={"masterPasswordHash": "bm90IGl0"})
    assert refused.status_code == 400
    assert (await api_key_login(alice, client_id, old["apiKey"])).status_code == 200
    rotated = await alice.post("/api/accounts/rotate-api-key", json={"masterPasswordHash": alice.password_hash()})
    assert rotated.status_code == 200 and rotated.json()["apiKey"] != old["apiKey"]
    assert (await api_key_login(alice, client_id, old["apiKey"])).json()["error"] == "invalid_client"
    assert (await api_key_login(alice, client_id, rotated.json()["apiKey"])).status_code == 200


async def test_wrong_secrets_and_clients_are_refused_and_limited(
    alice: BitwardenClient, bob: BitwardenClient, db: asyncpg.Connection,
) -> None:
    alice_id = await user_id_of(alice)
    secret = (await alice.post("/api/accounts/api-key", json={"masterPasswordHash": alice.password_hash()})).json()
    bob_secret = (await bob.post("/api/accounts/api-key", json={"masterPasswordHash": bob.password_hash()})).json()
    for client_id, given in ((f"user.{alice_id}", bob_secret["apiKey"]), (f"user.{alice_id}", "x" * 30),
                             ("user.not-a-uuid", secret["apiKey"]), (f"organization.{alice_id}", secret["apiKey"]),
                             ("user.00000000-0000-0000-0000-000000000001", secret["apiKey"])):
        refused = await api_key_login(alice, client_id, given)
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_client", (client_id, refused.text)
    # a user without a key yet cannot be logged in to with an empty or made-up one
    carol_id = await db.fetchval(
        "INSERT INTO users (email, password_hash, key) VALUES ('c@example.com', 'x', 'k') RETURNING id")
    assert (await api_key_login(alice, f"user.{carol_id}", "x" * 30)).status_code == 400
    bad_scope = await alice.http.post("/identity/connect/token", data={
        "grant_type": "client_credentials", "client_id": f"user.{alice_id}", "client_secret": secret["apiKey"],
        "scope": "api.organization", "deviceType": "25", "deviceIdentifier": "d", "deviceName": "n"})
    assert bad_scope.status_code == 400 and bad_scope.json()["error"] == "invalid_scope"

    # guessing is limited like passwords, per client id: then even the right key waits
    for _ in range(12):
        await api_key_login(alice, f"user.{alice_id}", "y" * 30)
    limited = await api_key_login(alice, f"user.{alice_id}", secret["apiKey"])
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0
    assert limited.json()["error"] == "temporarily_unavailable"
