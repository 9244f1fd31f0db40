"""Memory comes back after a burst of large blocks, as the API's password hashing makes them."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from core import allocator
from tests.conftest import ROOT
from tests.support.tools import require


@pytest.fixture
def glibc_allocator() -> None:
    """The trims are glibc's: elsewhere they do nothing (a skip outside CI, a failure in it)."""
    require(allocator._libc is not None, "the allocator is not glibc's")


glibc = pytest.mark.usefixtures("glibc_allocator")

# Six threads hash passwords (argon2: 19 MiB each time) with small objects allocated in between,
# then three 16 MiB bodies come and go: what a burst of logins and large requests leaves behind.
BURST = textwrap.dedent("""
    import sys, threading
    import psutil
    from argon2 import PasswordHasher
    from core import allocator

    allocator.keep_large_blocks_returnable()
    hasher = PasswordHasher(time_cost=1, memory_cost=19 * 1024, parallelism=1)
    hasher.hash("warm up")
    process = psutil.Process()
    before = process.memory_info().rss

    def logins():
        kept = []
        for _ in range(3):
            hasher.hash("a master password hash")
            kept.append(bytearray(64))

    threads = [threading.Thread(target=logins) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    bodies = [bytes(16 << 20) for _ in range(3)]
    small = [bytearray(100) for _ in range(1000)]
    del bodies
    allocator.trim()
    print(process.memory_info().rss - before)
""")


@glibc
def test_a_burst_of_large_blocks_leaves_no_memory_behind() -> None:
    grown = int(subprocess.run([sys.executable, "-c", BURST], cwd=ROOT, check=True,
                               capture_output=True, text=True).stdout)
    # untuned, glibc keeps about 100 MiB of this burst
    assert grown < 8 << 20, f"{grown / 2**20:.1f} MiB kept after the burst"


# Closed connections leave reference cycles holding their buffers: what a server at rest after a
# burst of connections keeps until a full collection, which its quiet loop would not start.
CYCLES = textwrap.dedent("""
    import asyncio, gc
    from core import allocator

    import sys
    IN_USE = int(sys.argv[1])  # bytes the server says it holds for live work
    gc.disable()  # the burst's garbage must outlive it, as a quiet server's does
    allocator.keep_large_blocks_returnable()

    class Connection:
        def __init__(self):
            self.buffer = bytearray(32 << 10)
            self.protocol = {"connection": self}

    async def main():
        maintenance = asyncio.create_task(allocator.trim_periodically(0.2, collect_after=16 << 20,
                                                                      in_use=lambda: IN_USE))
        await asyncio.sleep(0)  # started at rest, as a server's maintenance is
        before = allocator.resident()
        for _ in range(2000):
            Connection()
        burst = allocator.resident() - before
        await asyncio.sleep(0.5)
        maintenance.cancel()
        print(burst, allocator.resident() - before)

    asyncio.run(main())
""")


@glibc
def test_a_server_at_rest_frees_what_closed_connections_left_in_cycles() -> None:
    burst, kept = map(int, subprocess.run([sys.executable, "-c", CYCLES, "0"], cwd=ROOT, check=True,
                                          capture_output=True, text=True).stdout.split())
    assert burst > 48 << 20, "the burst left less garbage than the test means to free"
    assert kept < 8 << 20, f"{kept / 2**20:.1f} MiB of {burst / 2**20:.1f} MiB kept"


@glibc
def test_growth_the_server_holds_for_live_work_starts_no_full_collection() -> None:
    # a hub's open connections: a full collection would stop its event loop and free nothing
    burst, kept = map(int, subprocess.run([sys.executable, "-c", CYCLES, str(256 << 20)], cwd=ROOT, check=True,
                                          capture_output=True, text=True).stdout.split())
    assert kept > burst // 2, f"collected: {kept / 2**20:.1f} MiB of {burst / 2**20:.1f} MiB kept"
