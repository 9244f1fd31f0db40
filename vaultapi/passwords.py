"""The master password hash a client sends, hashed again before it is stored (argon2id).

Hashing is slow on purpose, so it runs in a worker thread to keep the event loop free. The
parameters are OWASP's recommended argon2id minimum (19 MiB, 2 passes, 1 lane): what arrives is
already the output of 600000 client-side PBKDF2 rounds, and a login must stay cheap enough that
a burst of them cannot starve the server. Stored hashes carry their parameters, so raising them
later needs no migration.

At most HASHING_SLOTS hashes run at once: one per core but one, so that a burst of logins (or
of guesses, until the login limits stop them) leaves a core to the event loops of the API and the
hub and to PostgreSQL, and every other request keeps its pace; more would only share the same
cores. They run in threads of their own: each thread that hashes keeps a malloc arena sized for argon2's
19 MiB, so the number of such threads is what bounds that memory. A hash that finds no free slot within
HASHING_WAIT seconds is refused with a 429 rather than queued behind a burst. Those threads also
run at a lower CPU priority (``HASHING_NICENESS``, Linux): a core busy hashing guesses is handed
to the API's event loop whenever it has work, and to the other processes that share the API's
scheduling group (PostgreSQL and the hub on one machine without cgroups of their own), while on
an idle machine a login hashes as fast as before.
"""

from __future__ import annotations

import asyncio
import functools
import os
import secrets
import threading
import weakref
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from vaultapi.errors import TooManyRequests

__all__ = ["HASHING_NICENESS", "HASHING_SLOTS", "HASHING_WAIT", "hash_password", "hashing_slot", "verify_password"]

HASHING_SLOTS = max(1, len(os.sched_getaffinity(0)) - 1)
#: seconds a hash may wait for a slot; a login takes a few tens of milliseconds
HASHING_WAIT = 2.0

T = TypeVar("T")

_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
#: added to a hashing thread's nice value: the cores go first to everything else a server does
HASHING_NICENESS = 10


def _lower_priority() -> None:
    try:  # on Linux a thread's nice value is its own, its native id naming it
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, 0) + HASHING_NICENESS)
    except (AttributeError, OSError):
        pass  # elsewhere hashing keeps the process's priority: the slots alone bound it


_hashing_threads = ThreadPoolExecutor(HASHING_SLOTS, thread_name_prefix="argon2", initializer=_lower_priority)
# a semaphore belongs to one event loop; tests run several loops in one process
_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()


@asynccontextmanager
async def hashing_slot() -> AsyncIterator[None]:
    """Hold one of the HASHING_SLOTS; 429 when none frees up within HASHING_WAIT."""
    loop = asyncio.get_running_loop()
    slots = _slots.get(loop)
    if slots is None:
        slots = _slots[loop] = asyncio.Semaphore(HASHING_SLOTS)
    try:
        async with asyncio.timeout(HASHING_WAIT):
            await slots.acquire()
    except TimeoutError:
        raise TooManyRequests("The server is busy. Try again in a moment.", retry_after=1) from None
    try:
        yield
    finally:
        slots.release()


async def _in_hashing_thread(work: Callable[..., T], *args: object) -> T:
    return await asyncio.get_running_loop().run_in_executor(_hashing_threads, work, *args)


async def hash_password(master_password_hash: str) -> str:
    async with hashing_slot():
        return await _in_hashing_thread(_hasher.hash, master_password_hash)


@functools.cache
def _stand_in_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe())


async def verify_password(stored: str | None, master_password_hash: str) -> bool:
    """Whether the hash matches; for an unknown account (stored None) the same work is done
    against a stand-in, so the time taken does not tell which emails have accounts."""
    def check() -> bool:
        try:
            return _hasher.verify(stored or _stand_in_hash(), master_password_hash) and stored is not None
        except (VerificationError, InvalidHashError):
            return False

    async with hashing_slot():
        return await _in_hashing_thread(check)
