"""Login limits: a token bucket per client address and per account, kept in the database, and a
bounded number of password hashes at a time.

Every client here connects from its own loopback address (127.0.0.2, 127.0.0.3, ...), so the
server sees distinct addresses without a proxy in front.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
import asyncpg
import pytest

from tests.support.bwclient import BitwardenClient
from tests.vaultapi.conftest import PASSWORD, running_api
from vaultapi import passwords
from vaultapi.limits import address_key
from vaultapi import limiter as limiter_module
from vaultapi.limiter import Limiter

BURST = 3
#: registrations come from here, so they take nothing from the addresses a test watches
SETUP_ADDRESS = "127.0.0.250"


@asynccontextmanager
async def limited_api(database_url: str, burst: int = BURST, seconds: int = 60) -> AsyncIterator[str]:
    async with running_api(database_url, login_ratelimit_max_burst=burst, login_ratelimit_seconds=seconds) as url:
        yield url


@asynccontextmanager
async def clients() -> AsyncIterator[Callable[..., Awaitable[BitwardenClient]]]:
    """A factory of clients, each with a known account and its own address; all closed at the end."""
    async with AsyncExitStack() as stack:
        async def make(url: str, email: str, address: str, *, register: bool = False) -> BitwardenClient:
            if register:
                setup = await stack.enter_async_context(BitwardenClient(url, local_address=SETUP_ADDRESS))
                await setup.register(email, PASSWORD)
            client = await stack.enter_async_context(BitwardenClient(url, local_address=address))
            client.email, client.password = email, PASSWORD
            return client

        yield make


async def wrong_grant(client: BitwardenClient) -> httpx.Response:
    return await client.request_token(password="not it")


def assert_too_many(reply: httpx.Response, *, oauth: bool) -> int:
    """A 429 in the shape the route's clients parse, with a Retry-After in whole seconds."""
    assert reply.status_code == 429, reply.text
    retry_after = int(reply.headers["retry-after"])
    assert retry_after >= 1
    body = reply.json()
    if oauth:
        assert body["error"] and body["error_description"] == body["ErrorModel"]["Message"]
    else:
        assert body["object"] == "error" and body["message"]
    return retry_after


async def test_wrong_grants_beyond_the_burst_from_one_address_are_429(database_url: str) -> None:
    async with limited_api(database_url) as url, clients() as client:
        mallory = await client(url, "nobody@example.com", "127.0.0.2")
        for number in range(BURST):
            mallory.email = f"nobody{number}@example.com"
            assert (await wrong_grant(mallory)).status_code == 400
        mallory.email = "someone-else@example.com"
        assert_too_many(await wrong_grant(mallory), oauth=True)

        # the address is out of attempts, whoever it tries; another address and account are not
        alice = await client(url, "alice@example.com", "127.0.0.2", register=True)
        assert_too_many(await alice.request_token(), oauth=True)
        bob = await client(url, "bob@example.com", "127.0.0.3", register=True)
        assert (await bob.request_token()).status_code == 200


async def test_wrong_grants_for_one_account_from_many_addresses_lock_that_account(database_url: str) -> None:
    async with limited_api(database_url) as url, clients() as client:
        await client(url, "alice@example.com", "127.0.0.250", register=True)
        for number in range(BURST):
            guesser = await client(url, "alice@example.com", f"127.0.0.{10 + number}")
            assert (await wrong_grant(guesser)).status_code == 400
        alice = await client(url, "alice@example.com", "127.0.0.2")
        assert_too_many(await alice.request_token(), oauth=True)
        bob = await client(url, "bob@example.com", "127.0.0.3", register=True)
        assert (await bob.request_token()).status_code == 200


async def test_the_limit_holds_across_api_replicas(database_url: str) -> None:
    async with limited_api(database_url) as first, limited_api(database_url) as second, clients() as client:
        await client(first, "alice@example.com", SETUP_ADDRESS, register=True)
        replicas = [await client(url, "alice@example.com", "127.0.0.2") for url in (first, second)]
        for number in range(BURST):
            assert (await wrong_grant(replicas[number % 2])).status_code == 400
        assert_too_many(await wrong_grant(replicas[BURST % 2]), oauth=True)
        assert_too_many(await replicas[(BURST + 1) % 2].request_token(), oauth=True)


async def test_right_password_within_the_limit_logs_in_and_clears_the_account_count(database_url: str) -> None:
    async with limited_api(database_url) as url, clients() as client:
        alice = await client(url, "alice@example.com", "127.0.0.2", register=True)
        for _ in range(BURST - 1):
            assert (await wrong_grant(alice)).status_code == 400
        assert (await alice.request_token()).status_code == 200
        # a success starts the account's count afresh (the address's count does not reset)
        elsewhere = await client(url, "alice@example.com", "127.0.0.3")
        for _ in range(BURST):
            assert (await wrong_grant(elsewhere)).status_code == 400
        assert_too_many(await wrong_grant(elsewhere), oauth=True)


async def test_locked_account_refuses_the_right_password_until_the_wait_is_over(database_url: str) -> None:
    async with limited_api(database_url, burst=2, seconds=1) as url, clients() as client:
        alice = await client(url, "alice@example.com", "127.0.0.2", register=True)
        for _ in range(2):
            assert (await wrong_grant(alice)).status_code == 400
        retry_after = assert_too_many(await alice.request_token(), oauth=True)
        assert retry_after <= 3
        await asyncio.sleep(retry_after + 0.2)
        assert (await alice.request_token()).status_code == 200


async def test_refused_attempts_push_the_wait_back_up_to_a_bound(database_url: str) -> None:
    async with limited_api(database_url, seconds=60) as url, clients() as client:
        mallory = await client(url, "alice@example.com", "127.0.0.2")
        for _ in range(BURST):
            assert (await wrong_grant(mallory)).status_code == 400
        waits = [assert_too_many(await wrong_grant(mallory), oauth=True) for _ in range(BURST + 3)]
        # (the bucket has been refilling since the first attempt, for a few seconds at most)
        assert 2 * 60 - 5 <= waits[0] <= 2 * 60, "the refused attempt itself costs one period more"
        assert waits[0] < waits[1] < waits[2]
        assert (BURST + 1) * 60 - 5 <= waits[-1] and max(waits) <= (BURST + 1) * 60


async def test_verify_password_routes_share_the_limit(database_url: str) -> None:
    async with limited_api(database_url) as url, clients() as client:
        alice = await client(url, "alice@example.com", "127.0.0.2", register=True)
        await alice.login()
        replies = [await alice.post("/api/accounts/verify-password", {"masterPasswordHash": "wrong"})
                   for _ in range(BURST)]
        assert [reply.status_code for reply in replies].count(429) == 1 and replies[-1].status_code == 429
        assert_too_many(replies[-1], oauth=False)
        right = {"masterPasswordHash": alice.password_hash()}
        assert_too_many(await alice.post("/api/accounts/verify-password", right), oauth=False)
        assert_too_many(await alice.post("/api/accounts/security-stamp", right), oauth=False)


async def test_saturated_hashing_answers_429(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(passwords, "HASHING_WAIT", 0.05)
    async with running_api(database_url) as url, clients() as client:
        alice = await client(url, "alice@example.com", "127.0.0.2", register=True)
        async with AsyncExitStack() as held:
            for _ in range(passwords.HASHING_SLOTS):
                await held.enter_async_context(passwords.hashing_slot())
            assert_too_many(await alice.request_token(), oauth=True)
        assert (await alice.request_token()).status_code == 200


async def test_take_prunes_buckets_that_have_refilled(db, monkeypatch: pytest.MonkeyPatch) -> None:
    async def expired(key: str) -> None:
        await db.execute("INSERT INTO login_limits (scope, key, tat) VALUES ('address', $1, now() - interval '1 hour')",
                         key)

    limiter = Limiter(db)
    await expired("old")
    await db.execute("INSERT INTO login_limits (scope, key, tat) VALUES ('address', 'busy', now() + interval '1 hour')")
    assert await limiter.take([("address", "new")], period=60, burst=10) == 0
    assert {r["key"] for r in await db.fetch("SELECT key FROM login_limits")} == {"busy", "new"}

    # a flood of new keys prunes the table once a second, not once per key
    monkeypatch.setattr(limiter_module, "PRUNE_EVERY", 3600)
    await expired("older")
    assert await limiter.take([("address", "newer")], period=60, burst=10) == 0
    assert {r["key"] for r in await db.fetch("SELECT key FROM login_limits")} == {"busy", "new", "older", "newer"}
    monkeypatch.setattr(limiter_module, "PRUNE_EVERY", 0)
    assert await limiter.take([("address", "newest")], period=60, burst=10) == 0
    assert {r["key"] for r in await db.fetch("SELECT key FROM login_limits")} == {"busy", "new", "newer", "newest"}


async def test_refused_attempts_are_counted_in_memory_and_written_back(
    database_url: str, db, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def ahead() -> float:
        """Seconds until the address's bucket is full again, as the table has it."""
        return await db.fetchval("SELECT extract(epoch FROM tat - now())::float8 FROM login_limits"
                                 " WHERE scope = 'address' AND key = '127.0.0.2'")

    monkeypatch.setattr(limiter_module, "WRITE_BACK", 3600)
    async with limited_api(database_url, seconds=60) as url, clients() as client:
        mallory = await client(url, "alice@example.com", "127.0.0.2")
        for _ in range(BURST):
            assert (await wrong_grant(mallory)).status_code == 400
        first = assert_too_many(await wrong_grant(mallory), oauth=True)
        written = await ahead()
        assert (BURST + 1) * 60 - 5 <= written <= (BURST + 1) * 60
        # the bucket is known empty: refused without a write, yet each refusal still costs a period
        later = [assert_too_many(await wrong_grant(mallory), oauth=True) for _ in range(2)]
        assert first < later[0] < later[1]
        assert abs(await ahead() - written) < 5
        # another account from the same address is refused alike, without a write
        mallory.email = "bob@example.com"
        assert_too_many(await wrong_grant(mallory), oauth=True)
        assert not await db.fetchval("SELECT count(*) FROM login_limits WHERE key = 'bob@example.com'")

        # the next attempt after WRITE_BACK carries every refusal to the table, up to the bound
        monkeypatch.setattr(limiter_module, "WRITE_BACK", 0)
        assert_too_many(await wrong_grant(mallory), oauth=True)
        assert 2 * BURST * 60 - 5 <= await ahead() <= 2 * BURST * 60


def test_an_ipv6_client_is_limited_by_its_64_bit_prefix() -> None:
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("::ffff:192.0.2.7") == address_key("192.0.2.7") == "192.0.2.7"
    assert address_key("") == address_key("not an address") == "unknown"


async def test_refusals_counted_in_memory_outlive_a_failed_write_back(
    database_url: str, db, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = ("address", "192.0.2.9")
    await db.execute("INSERT INTO login_limits (scope, key, tat) VALUES ($1, $2, now() + interval '1 hour')", *key)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    limiter = Limiter(pool)
    monkeypatch.setattr(limiter_module, "WRITE_BACK", 3600)
    for _ in range(3):  # the first read from the table, then two from memory
        assert await limiter.take([key], period=60, burst=10) > 0
    await pool.close()  # the database is gone when the refusals are to be written back
    monkeypatch.setattr(limiter_module, "WRITE_BACK", 0)
    with pytest.raises(asyncpg.InterfaceError):
        await limiter.take([key], period=60, burst=10)
    assert limiter._empty[key].unwritten == 2  # kept, for the next attempt to write
