"""Where an idle hub connection's memory goes: the Python allocations one hub holds per idle,
handshaken connection, by the line that made them.

One hub runs in this process (as the hub tests start it), under tracemalloc; ``--connections``
clients of the anonymous hub (no token: what any connection costs) connect from a process of
their own (bench/wsclients.c) and go idle. The snapshots before and after are diffed by line and
divided by the connections; the resident memory per connection is printed too (inflated by
tracemalloc's own bookkeeping: bench/fanout.py measures it without). For a before/after, run it
with another checkout first on PYTHONPATH.

    python bench/hub_memory.py [--connections 2000] [--lines 25]

Uses DATABASE_URL (a scratch database is created and dropped) or an embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import resource
import sys
import tracemalloc
import uuid
from pathlib import Path

import asyncpg
import psutil
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scratch import run_on_scratch_database  # noqa: E402
from bench.wsclients import ClientProcess  # noqa: E402
from core.keystore import ensure_signing_key  # noqa: E402
from tests.wshub.support import hub_config, start_hub  # noqa: E402


async def bench(url: str, args: argparse.Namespace) -> None:
    conn = await asyncpg.connect(url)
    try:
        await ensure_signing_key(conn)
    finally:
        await conn.close()
    room = args.connections + 100
    hub = await start_hub(url, hub_config(hub_max_connections=room, hub_max_anonymous_connections=room,
                                          hub_max_connections_per_ip=room, hub_handshake_timeout=60))
    clients = None
    try:
        await asyncio.sleep(0.5)
        gc.collect()
        rss_before = psutil.Process().memory_info().rss
        before = tracemalloc.take_snapshot()
        clients = ClientProcess(hub.port, [f"/notifications/anonymous-hub?Token={uuid.uuid4()}"
                                           for _ in range(args.connections)])
        await clients.ready()
        if clients.failed:
            raise RuntimeError(f"{clients.failed} connections failed")
        await asyncio.sleep(2.0)  # idle: let allocations settle
        gc.collect()
        rss_after = psutil.Process().memory_info().rss
        after = tracemalloc.take_snapshot()
    finally:
        if clients is not None:
            clients.kill()
        await hub.stop()
    ours = [tracemalloc.Filter(False, tracemalloc.__file__)]
    stats = after.filter_traces(ours).compare_to(before.filter_traces(ours), "lineno")
    n = args.connections
    print(f"{n} idle connections: {sum(s.size_diff for s in stats) / n:,.0f} B of Python allocations each;"
          f" RSS {(rss_after - rss_before) / n / 1024:.1f} KiB each (under tracemalloc)\n")
    print(f"| {'B/conn':>8} | {'blocks/conn':>11} | line")
    print(f"|{'-' * 10}|{'-' * 13}|{'-' * 60}")
    for stat in stats[:args.lines]:
        where = stat.traceback[0]
        print(f"| {stat.size_diff / n:8,.0f} | {stat.count_diff / n:11.2f} | "
              f"{where.filename.split('site-packages/')[-1]}:{where.lineno}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--lines", type=int, default=25)
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    tracemalloc.start()
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())  # as the hub runs
    return run_on_scratch_database(bench, args)


if __name__ == "__main__":
    sys.exit(main())
