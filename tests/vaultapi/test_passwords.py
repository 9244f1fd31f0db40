"""Server-side hashing of the client's master password hash."""

from __future__ import annotations

import asyncio
import os
import threading

from vaultapi.passwords import hash_password, verify_password


async def test_stored_hash_verifies_only_the_same_master_password_hash() -> None:
    stored = await hash_password("client-hash")
    assert stored.startswith("$argon2id$") and "client-hash" not in stored
    assert await verify_password(stored, "client-hash")
    assert not await verify_password(stored, "other-hash")


async def test_unknown_account_never_verifies() -> None:
    assert not await verify_password(None, "client-hash")
    assert not await verify_password("", "client-hash")
    assert not await verify_password("not an argon2 hash", "client-hash")



async def test_a_burst_of_hashes_leaves_a_core_to_everything_else() -> None:
    cores = len(os.sched_getaffinity(0))
    await asyncio.gather(*(hash_password(f"client-hash-{n}") for n in range(4 * cores)))
    hashing = [thread for thread in threading.enumerate() if thread.name.startswith("argon2")]
    assert 1 <= len(hashing) <= max(1, cores - 1)
