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


async def test_hashing_threads_yield_the_cores_to_the_event_loop() -> None:
    """A burst of guesses hashes at a lower CPU priority than the loop that serves everyone else."""
    from vaultapi.passwords import HASHING_NICENESS, _in_hashing_thread

    await hash_password("client-hash")  # the pool's threads are started by their first work
    in_hashing_thread = await _in_hashing_thread(os.getpriority, os.PRIO_PROCESS, 0)
    assert in_hashing_thread == min(19, os.getpriority(os.PRIO_PROCESS, 0) + HASHING_NICENESS)
