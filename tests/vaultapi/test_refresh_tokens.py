"""Refresh tokens: a sliding lifetime, one family per device login, and the security stamp."""

from __future__ import annotations

import httpx

from tests.support.bwclient import BitwardenClient
from tests.vaultapi.conftest import running_api


async def refresh_with(client: BitwardenClient, token: str) -> httpx.Response:
    return await client.http.post("/identity/connect/token", data={
        "grant_type": "refresh_token", "client_id": "cli", "refresh_token": token})


async def lifetime_left(db, client: BitwardenClient) -> float:
    return await db.fetchval(
        "SELECT extract(epoch FROM refresh_token_expires_at - now()) FROM devices WHERE identifier = $1",
        client.device)


async def test_refresh_token_expires_unless_used_and_each_use_extends_it(database_url: str, db, new_client) -> None:
    async with running_api(database_url, refresh_token_lifetime=3600) as url:
        alice = BitwardenClient(url)
        async with alice:
            await alice.register("alice@example.com", "correct horse battery staple")
            await alice.login()
            assert 3500 < await lifetime_left(db, alice) <= 3600
            await db.execute("UPDATE devices SET refresh_token_expires_at = now() + interval '1 minute'")
            assert (await alice.refresh()).status_code == 200
            assert 3500 < await lifetime_left(db, alice) <= 3600, "a use starts the lifetime again"

            await db.execute("UPDATE devices SET refresh_token_expires_at = now() - interval '1 second'")
            expired = await alice.refresh()
            assert expired.status_code == 400 and expired.json()["error"] == "invalid_grant"
            await alice.login()
            assert (await alice.refresh()).status_code == 200


async def test_replaying_a_rotated_token_revokes_the_device_token(alice: BitwardenClient, db) -> None:
    first = alice.tokens["refresh_token"]
    assert (await alice.refresh()).status_code == 200
    second = alice.tokens["refresh_token"]
    assert (await alice.refresh()).status_code == 200
    current = alice.tokens["refresh_token"]
    # long after the rotation: no client racing itself, someone holds a copy
    await db.execute("UPDATE devices SET refresh_token_issued_at = now() - interval '1 hour'")
    for replayed in (first, second):
        reply = await refresh_with(alice, replayed)
        assert reply.status_code == 400 and reply.json()["error"] == "invalid_grant"
    revoked = await refresh_with(alice, current)
    assert revoked.status_code == 400 and revoked.json()["error"] == "invalid_grant"
    await alice.login()
    assert (await alice.refresh()).status_code == 200


async def test_replay_right_after_rotation_is_refused_without_revoking(alice: BitwardenClient) -> None:
    # two refreshes of one client racing each other: the loser is refused, the winner's token lives
    first = alice.tokens["refresh_token"]
    assert (await alice.refresh()).status_code == 200
    assert (await refresh_with(alice, first)).status_code == 400
    assert (await alice.refresh()).status_code == 200


async def test_replay_revokes_only_the_device_it_came_from(alice: BitwardenClient, new_client, db) -> None:
    phone = new_client()
    await phone.login(alice.email, alice.password)
    first = alice.tokens["refresh_token"]
    assert (await alice.refresh()).status_code == 200
    await db.execute("UPDATE devices SET refresh_token_issued_at = now() - interval '1 hour'")
    assert (await refresh_with(alice, first)).status_code == 400
    assert (await alice.refresh()).status_code == 400
    assert (await phone.refresh()).status_code == 200


async def test_security_stamp_changed_in_sql_stops_refresh_tokens(alice: BitwardenClient, db) -> None:
    await db.execute("UPDATE users SET security_stamp = gen_random_uuid()")
    reply = await alice.refresh()
    assert reply.status_code == 400 and reply.json()["error"] == "invalid_grant"
    await alice.login()
    assert (await alice.refresh()).status_code == 200


async def test_password_login_starts_a_new_family(alice: BitwardenClient, db) -> None:
    first = alice.tokens["refresh_token"]
    assert (await alice.refresh()).status_code == 200
    await alice.login()
    await db.execute("UPDATE devices SET refresh_token_issued_at = now() - interval '1 hour'")
    # a token of the previous login is unknown, not a replay of the new one
    assert (await refresh_with(alice, first)).status_code == 400
    assert (await alice.refresh()).status_code == 200
