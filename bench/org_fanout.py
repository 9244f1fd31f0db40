"""What an organization item's change costs as the organization grows, beside a personal item's.

Seeds a small organization (10 members) and a large one (10,000 members, of whom --connected
have a SignalR connection to the hub), every member granted the collection that holds the item,
and a user with a personal item and one connection. Starts the hub (`pgwarden hub`), connects the
clients over worker processes, then edits the three items in turn, --events times each, paced
so that one fan-out ends before the next write, and measures in the same run:

- write latency: the single-item UPDATE and its COMMIT, timed from the client, with the hub
  stopped (SIGSTOP: its notifications wait in PostgreSQL's queue), so that what is measured is
  what the writer pays for the organization's size and not a fan-out sharing the machine; the
  ratio of the large organization's to the small one's. The write is timed again during the
  notification phase, beside the fan-outs, for comparison. The hub and the clients run niced;
- commit -> last member notified: for each change, from just before the statement is sent to the
  last of its recipients receiving the notification (1 for the personal item, 10 and --connected
  for the organizations), p50 and p99.

Prints a table; asserts nothing.

    python bench/org_fanout.py [--members 10000] [--connected 2000] [--events 100]

Uses DATABASE_URL (a scratch database is created and dropped) or an embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scratch import free_port, scratch_database, until_alive  # noqa: E402
from core.keystore import ensure_signing_key, load_signing_key  # noqa: E402
from core.tokens import TokenIssuer  # noqa: E402
from wshub.codec import Invocation, MessagePackProtocol, MessageReader  # noqa: E402

DOMAIN = "https://bench.invalid"
WORKERS = 4
SMALL = 10
#: between two writes: long enough for a fan-out to the connected members to end
PACE = 0.6
#: The hub and the clients run at a lower priority than the writer and PostgreSQL, as on machines
#: of their own: a fan-out starts at the commit, before the writer has read its reply, and on one
#: small machine it would otherwise take the writer's CPU and be counted as the write's cost.
NICE = 10


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


# -- client worker processes ----------------------------------------------------------------------


async def _client_worker(url: str, tokens: list[str], ready: Any, stop: Any, results: Any) -> None:
    # (item id, revision date in ms) -> [notifications received, when the last one arrived]
    received: dict[tuple[str, int], list[float]] = defaultdict(lambda: [0, 0.0])
    sockets = []
    for token in tokens:
        ws = await websockets.connect(f"{url}?access_token={token}", max_size=None, ping_interval=None,
                                      open_timeout=60)
        await ws.send('{"protocol":"messagepack","version":1}\x1e')
        assert await ws.recv() == "{}\x1e"
        sockets.append(ws)

    async def read(ws: Any) -> None:
        reader = MessageReader(MessagePackProtocol(), 1 << 20)
        async for frame in ws:
            if isinstance(frame, bytes):
                now = time.time()
                for message in reader.feed(frame):
                    if isinstance(message, Invocation):
                        payload = message.arguments[0]["Payload"]
                        entry = received[(payload.get("Id"), _ms(payload.get("RevisionDate")))]
                        entry[0] += 1
                        entry[1] = max(entry[1], now)

    readers = [asyncio.create_task(read(ws)) for ws in sockets]
    ready.release()
    while not stop.is_set():
        await asyncio.sleep(0.05)
    for task in readers:
        task.cancel()
    results.put(dict(received))


def _ms(date: Any) -> int:
    return round(date.timestamp() * 1000) if date is not None else 0


def client_worker(url: str, tokens: list[str], ready: Any, stop: Any, results: Any) -> None:
    os.nice(NICE)
    asyncio.run(_client_worker(url, tokens, ready, stop, results))


# -- seeding ----------------------------------------------------------------------------------------


async def _organization(conn: asyncpg.Connection, members: int) -> tuple[uuid.UUID, uuid.UUID, list[asyncpg.Record]]:
    """An organization whose members all hold the collection of its one item: (org, item, members)."""
    org = await conn.fetchval("INSERT INTO organizations (name, billing_email) VALUES ('bench', 'b@x') RETURNING id")
    collection = await conn.fetchval("INSERT INTO collections (organization_id, name) VALUES ($1, 'c') RETURNING id",
                                     org)
    users = await conn.fetch(
        "INSERT INTO users (email, password_hash, key) SELECT $1 || n || '@bench', 'h', 'k'"
        " FROM generate_series(1, $2) n RETURNING id, security_stamp::text", str(org), members)
    await conn.execute(
        "INSERT INTO memberships (organization_id, user_id, type, status, key)"
        " SELECT $1, u, CASE WHEN n = 1 THEN 0 ELSE 2 END, 2, 'k' FROM unnest($2::uuid[]) WITH ORDINALITY AS m(u, n)",
        org, [row["id"] for row in users])
    await conn.execute(
        "INSERT INTO collection_members (organization_id, collection_id, membership_id)"
        " SELECT $1, $2, id FROM memberships WHERE organization_id = $1 AND type = 2", org, collection)
    item = await conn.fetchval("INSERT INTO ciphers (organization_id, collection_ids, type, data)"
                               " VALUES ($1, $2, 1, '{}') RETURNING id", org, [collection])
    return org, item, list(users)


async def seed(url: str, members: int, connected: int) -> tuple[dict[str, uuid.UUID], dict[str, int], list[str]]:
    """The three items, how many connected users see each, and the tokens of every connection."""
    conn = await asyncpg.connect(url)
    try:
        await ensure_signing_key(conn)
        issuer = TokenIssuer(await load_signing_key(conn, None), f"{DOMAIN}|login", 3600)
        _, small_item, small_users = await _organization(conn, SMALL)
        _, large_item, large_users = await _organization(conn, members)
        person = await conn.fetchrow("INSERT INTO users (email, password_hash, key) VALUES ('p@bench', 'h', 'k')"
                                     " RETURNING id, security_stamp::text")
        own_item = await conn.fetchval("INSERT INTO ciphers (user_id, type, data) VALUES ($1, 1, '{}') RETURNING id",
                                       person["id"])
        await conn.execute("ANALYZE")
        online = [person, *small_users, *large_users[:connected]]
        tokens = [issuer.issue({"sub": str(row["id"]), "sstamp": row["security_stamp"], "device": str(uuid.uuid4())})
                  for row in online]
        items = {"personal item": own_item, f"org of {SMALL}": small_item, f"org of {members}": large_item}
        return items, {"personal item": 1, f"org of {SMALL}": SMALL, f"org of {members}": connected}, tokens
    finally:
        await conn.close()


# -- the run ------------------------------------------------------------------------------------


async def run(url: str, members: int, connected: int, events: int) -> None:
    items, audience, tokens = await seed(url, members, connected)
    port = free_port()
    limit = str(len(tokens) + 10)
    env = {**os.environ, "DATABASE_URL": url, "WEBSOCKET_ADDRESS": "127.0.0.1", "WEBSOCKET_PORT": str(port),
           "DOMAIN": DOMAIN, "LOG_LEVEL": "warning", "HUB_MAX_CONNECTIONS_PER_USER": limit,
           "HUB_MAX_CONNECTIONS_PER_IP": limit, "HUB_MAX_CONNECTIONS": limit, "HUB_RATELIMIT_MAX_BURST": limit}
    hub = subprocess.Popen([sys.executable, "-m", "pgwarden.cli", "hub"], env=env, preexec_fn=lambda: os.nice(NICE))
    ctx = mp.get_context("spawn")
    stop, results, ready = ctx.Event(), ctx.Queue(), ctx.Semaphore(0)
    workers: list[Any] = []
    sent: dict[tuple[str, int], tuple[str, float]] = {}  # (item, revision) -> (kind, start)
    writes: dict[str, list[float]] = defaultdict(list)
    writes_live: dict[str, list[float]] = defaultdict(list)  # phase 2: the write beside the hub's fan-outs
    try:
        await until_alive(port, "hub")
        ws_url = f"ws://127.0.0.1:{port}/notifications/hub"
        workers = [ctx.Process(target=client_worker, args=(ws_url, tokens[i::WORKERS], ready, stop, results))
                   for i in range(WORKERS)]
        for worker in workers:
            worker.start()
        for _ in workers:
            while not ready.acquire(timeout=0.1):
                await asyncio.sleep(0.05)
        await asyncio.sleep(3.0)  # every connected member's grants loaded

        writer = await asyncpg.connect(url)
        order = list(items.items())

        async def edit(item: uuid.UUID, round_number: int) -> tuple[float, datetime]:
            started = time.time()
            revision = await writer.fetchval("UPDATE ciphers SET data = $2 WHERE id = $1 RETURNING revision_date",
                                             item, f'{{"n": {round_number}}}')
            return started, revision

        # 1. what the writer pays: the hub stopped, so no fan-out shares the machine with the write
        #    (its notifications wait in PostgreSQL's queue and are let go before phase 2)
        hub.send_signal(signal.SIGSTOP)
        try:
            for round_number in range(events + 1):
                random.Random(round_number).shuffle(order)
                for kind, item in order:
                    started, _ = await edit(item, round_number)
                    if round_number:  # the first round warms the plans up
                        writes[kind].append((time.time() - started) * 1000)
        finally:
            hub.send_signal(signal.SIGCONT)
        await asyncio.sleep(10.0)

        # 2. commit -> last member notified, one fan-out at a time, in a new order each round
        for round_number in range(events):
            random.Random(-round_number).shuffle(order)
            for kind, item in order:
                started, revision = await edit(item, events + 1 + round_number)
                sent[(str(item), _ms(revision))] = (kind, started)
                writes_live[kind].append((time.time() - started) * 1000)
                await asyncio.sleep(PACE)
        await writer.close()
        await asyncio.sleep(3.0)
        stop.set()
        collected = [results.get(timeout=120) for _ in workers]
    finally:
        stop.set()
        for worker in workers:
            worker.join(30)
        hub.terminate()
        hub.wait(30)

    counts: dict[tuple[str, int], int] = defaultdict(int)
    last: dict[tuple[str, int], float] = defaultdict(float)
    for received in collected:
        for key, (count, at) in received.items():
            counts[key] += count
            last[key] = max(last[key], at)
    notified: dict[str, list[float]] = defaultdict(list)
    complete: dict[str, int] = defaultdict(int)
    for key, (kind, started) in sent.items():
        if counts[key]:
            notified[kind].append((last[key] - started) * 1000)
        complete[kind] += counts[key] == audience[kind]

    print(f"\norganization fan-out: {events} edits of each item per phase, {len(tokens)} connections over "
          f"{WORKERS} client processes; writes timed with the hub stopped, then notifications one fan-out "
          f"at a time ({PACE * 1000:.0f} ms apart)\n")
    print(f"| {'item':<18} | {'recipients':>10} | {'write p50':>9} | {'write p99':>9} | {'p50 vs org of 10':>16} |"
          f" {'write p50 during fan-outs':>25} | {'commit -> last notified p50':>27} | {'p99':>9} | {'all notified':>12} |")
    print(f"|{'-' * 20}|{'-' * 12}|{'-' * 11}|{'-' * 11}|{'-' * 18}|{'-' * 27}|{'-' * 29}|{'-' * 11}|{'-' * 14}|")
    base = percentile(writes[f"org of {SMALL}"], 0.5)
    for kind in items:
        w50, w99 = percentile(writes[kind], 0.5), percentile(writes[kind], 0.99)
        live = percentile(writes_live[kind], 0.5)
        n50 = percentile(notified[kind], 0.5) if notified[kind] else float("nan")
        n99 = percentile(notified[kind], 0.99) if notified[kind] else float("nan")
        print(f"| {kind:<18} | {audience[kind]:>10} | {w50:>6.2f} ms | {w99:>6.2f} ms | {w50 / base:>15.2f}x |"
              f" {live:>22.2f} ms | {n50:>24.1f} ms | {n99:>6.1f} ms | {complete[kind]:>5} / {events:<4} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--connected", type=int, default=2_000)
    parser.add_argument("--events", type=int, default=100)
    args = parser.parse_args()

    with scratch_database() as url:
        asyncio.run(run(url, args.members, args.connected, args.events))
    return 0


if __name__ == "__main__":
    sys.exit(main())
