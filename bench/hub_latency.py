"""How fast and how lean the notifications hub is, beside a bare LISTEN on the same database.

Starts the hub (`pgwarden hub`) and N SignalR client connections spread over worker processes,
then measures, in one run:

- commit-to-receive latency p50/p99 of single-item changes through the hub, and for the same
  events on a bare asyncpg LISTEN connection in its own process (the floor); both clocks start
  just before the committing statement is sent;
- messages delivered per second when each event goes to every one of the N connections (all N
  belong to one user: every device of one account);
- resident memory of the hub process per idle connection.

Prints a table; asserts nothing.

    python bench/hub_latency.py [--connections 1000] [--events 300] [--fanout-events 20]

Uses DATABASE_URL (a scratch database is created and dropped) or an embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import psutil
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scratch import free_port, percentile, scratch_database, until_alive  # noqa: E402
from db.events import CHANNEL  # noqa: E402
from core.keystore import ensure_signing_key, load_signing_key  # noqa: E402
from core.tokens import TokenIssuer  # noqa: E402
from wshub.codec import Invocation, MessagePackProtocol, MessageReader  # noqa: E402

DOMAIN = "https://bench.invalid"
WORKERS = 4


# -- client worker processes ----------------------------------------------------------------------


def _notifications(reader: MessageReader, frame: bytes) -> list[dict[str, Any]]:
    return [m.arguments[0] for m in reader.feed(frame) if isinstance(m, Invocation)]


async def _client_worker(url: str, tokens: list[str], ready: Any, stop: Any, results: Any) -> None:
    received: list[tuple[str | None, float]] = []
    sockets = []
    for token in tokens:
        ws = await websockets.connect(f"{url}?access_token={token}", max_size=None, ping_interval=None)
        await ws.send('{"protocol":"messagepack","version":1}\x1e')
        assert await ws.recv() == "{}\x1e"
        sockets.append(ws)

    async def read(ws: Any) -> None:
        reader = MessageReader(MessagePackProtocol(), 1 << 20)
        async for frame in ws:
            if isinstance(frame, bytes):
                now = time.time()
                received.extend((n["Payload"].get("Id"), now) for n in _notifications(reader, frame))

    readers = [asyncio.create_task(read(ws)) for ws in sockets]
    ready.release()
    while not stop.is_set():
        await asyncio.sleep(0.05)
    for task in readers:
        task.cancel()
    results.put(("hub", received))


def client_worker(url: str, tokens: list[str], ready: Any, stop: Any, results: Any) -> None:
    asyncio.run(_client_worker(url, tokens, ready, stop, results))


async def _floor_worker(database_url: str, ready: Any, stop: Any, results: Any) -> None:
    received: list[tuple[str | None, float]] = []
    conn = await asyncpg.connect(database_url)
    await conn.add_listener(CHANNEL, lambda *args: received.append((json.loads(args[3])["item"], time.time())))
    ready.release()
    while not stop.is_set():
        await asyncio.sleep(0.05)
    await conn.close()
    results.put(("floor", received))


def floor_worker(database_url: str, ready: Any, stop: Any, results: Any) -> None:
    asyncio.run(_floor_worker(database_url, ready, stop, results))


class Listeners:
    """Client worker processes, one per shard of tokens, and a bare LISTEN worker beside them."""

    def __init__(self) -> None:
        self.ctx = mp.get_context("spawn")
        self.stop, self.results, self.ready = self.ctx.Event(), self.ctx.Queue(), self.ctx.Semaphore(0)
        self.workers: list[Any] = []

    async def start(self, ws_url: str, shards: list[list[str]], database_url: str) -> None:
        """Returns once every worker is connected and listening."""
        self.workers = [self.ctx.Process(target=client_worker, args=(ws_url, shard, self.ready, self.stop, self.results))
                        for shard in shards]
        self.workers.append(self.ctx.Process(target=floor_worker,
                                             args=(database_url, self.ready, self.stop, self.results)))
        for worker in self.workers:
            worker.start()
        for _ in self.workers:
            while not self.ready.acquire(timeout=0.1):
                await asyncio.sleep(0.05)

    def collect(self) -> list[tuple[str, list[tuple[str | None, float]]]]:
        """What each worker received: ("hub" or "floor", [(item id, epoch seconds)])."""
        self.stop.set()
        return [self.results.get(timeout=120) for _ in self.workers]

    def join(self) -> None:
        self.stop.set()
        for worker in self.workers:
            worker.join(30)


# -- the run ------------------------------------------------------------------------------------


async def seed(url: str, fan_connections: int) -> tuple[str, str, list[str], list[str]]:
    conn = await asyncpg.connect(url)
    try:
        await ensure_signing_key(conn)
        issuer = TokenIssuer(await load_signing_key(conn, None), f"{DOMAIN}|login", 3600)
        users = []
        for name in ("probe", "fan"):
            row = await conn.fetchrow(
                "INSERT INTO users (email, password_hash, key) VALUES ($1, 'h', 'k') RETURNING id::text, security_stamp::text",
                f"{name}@bench")
            users.append(row)
        tokens = {row["id"]: [issuer.issue({"sub": row["id"], "sstamp": row["security_stamp"],
                                            "device": str(uuid.uuid4())})
                              for _ in range(1 if i == 0 else fan_connections)]
                  for i, row in enumerate(users)}
        return users[0]["id"], users[1]["id"], tokens[users[0]["id"]], tokens[users[1]["id"]]
    finally:
        await conn.close()


async def run(url: str, connections: int, events: int, fanout_events: int) -> None:
    probe_user, fan_user, probe_tokens, fan_tokens = await seed(url, connections - 1)
    port = free_port()
    env = {**os.environ, "DATABASE_URL": url, "WEBSOCKET_ADDRESS": "127.0.0.1", "WEBSOCKET_PORT": str(port),
           "DOMAIN": DOMAIN, "LOG_LEVEL": "warning", "HUB_MAX_CONNECTIONS_PER_USER": str(connections + 10),
           "HUB_MAX_CONNECTIONS_PER_IP": str(connections + 10), "HUB_MAX_CONNECTIONS": str(connections + 10),
           "HUB_RATELIMIT_MAX_BURST": str(connections + 10),
           # room for every fan-out event in flight, at well over a notification's ~250 bytes each
           "HUB_SEND_BUFFER": str(max(65536, fanout_events * 2 * 512)),
           # one process: its RSS is what the table shows (HUB_WORKERS defaults to one per core)
           "HUB_WORKERS": "1"}
    hub = subprocess.Popen([sys.executable, "-m", "pgwarden.cli", "hub"], env=env)
    listeners = Listeners()
    try:
        await until_alive(port, "hub")
        await asyncio.sleep(1.0)
        hub_process = psutil.Process(hub.pid)
        rss_before = hub_process.memory_info().rss

        ws_url = f"ws://127.0.0.1:{port}/notifications/hub"
        shards = [probe_tokens + fan_tokens[0::WORKERS]] + [fan_tokens[i::WORKERS] for i in range(1, WORKERS)]
        await listeners.start(ws_url, shards, url)
        await asyncio.sleep(3.0)  # idle: let allocations settle
        rss_idle = hub_process.memory_info().rss

        writer = await asyncpg.connect(url)
        sent: dict[str, float] = {}
        for _ in range(events):
            item = uuid.uuid4()
            sent[str(item)] = time.time()
            await writer.execute("INSERT INTO folders (id, user_id, name) VALUES ($1, $2, 'n')", item,
                                 uuid.UUID(probe_user))
            await asyncio.sleep(0.01)
        fan_sent: dict[str, float] = {}
        fan_start = time.time()
        for _ in range(fanout_events):
            item = uuid.uuid4()
            fan_sent[str(item)] = time.time()
            await writer.execute("INSERT INTO folders (id, user_id, name) VALUES ($1, $2, 'n')", item,
                                 uuid.UUID(fan_user))
        await writer.close()
        await asyncio.sleep(5.0)
        collected = listeners.collect()
    finally:
        listeners.join()
        hub.terminate()
        hub.wait(30)

    floor_received = [entry for kind, entries in collected if kind == "floor" for entry in entries]
    client_received = [entry for kind, entries in collected if kind == "hub" for entry in entries]
    hub_latency = [(t - sent[i]) * 1000 for i, t in client_received if i in sent]
    floor_latency = [(t - sent[i]) * 1000 for i, t in floor_received if i in sent]
    fan_times = [t for i, t in client_received if i in fan_sent]
    expected_fan = fanout_events * (connections - 1)
    fan_elapsed = max(fan_times) - fan_start if fan_times else float("nan")
    per_connection = (rss_idle - rss_before) / connections

    def row(name: str, value: str, ratio: str = "") -> None:
        print(f"| {name:<48} | {value:>14} | {ratio:>16} |")

    print(f"\nhub benchmark: {connections} connections ({connections - 1} of one user + 1 probe), "
          f"{events} latency events, {fanout_events} fan-out events, {WORKERS} client processes\n")
    print(f"| {'measure':<48} | {'value':>14} | {'vs bare LISTEN':>16} |")
    print(f"|{'-' * 50}|{'-' * 16}|{'-' * 18}|")
    f50, f99 = percentile(floor_latency, 0.5), percentile(floor_latency, 0.99)
    h50, h99 = percentile(hub_latency, 0.5), percentile(hub_latency, 0.99)
    row("bare asyncpg LISTEN p50 (floor)", f"{f50:.2f} ms", "1.00x")
    row("bare asyncpg LISTEN p99 (floor)", f"{f99:.2f} ms", "1.00x")
    row("commit -> client through the hub p50", f"{h50:.2f} ms", f"{h50 / f50:.2f}x")
    row("commit -> client through the hub p99", f"{h99:.2f} ms", f"{h99 / f99:.2f}x")
    row("latency events received (hub / floor)", f"{len(hub_latency)} / {len(floor_latency)}")
    row(f"fan-out messages delivered (of {expected_fan})", f"{len(fan_times)}")
    row("fan-out messages per second", f"{len(fan_times) / fan_elapsed:,.0f}")
    row("hub RSS before clients", f"{rss_before / 2**20:.1f} MiB")
    row(f"hub RSS with {connections} idle connections", f"{rss_idle / 2**20:.1f} MiB")
    row("hub RSS per idle connection", f"{per_connection / 1024:.1f} KiB")
    print(f"\n(statistics: hub mean {statistics.mean(hub_latency):.2f} ms, floor mean "
          f"{statistics.mean(floor_latency):.2f} ms)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--fanout-events", type=int, default=20)
    args = parser.parse_args()

    with scratch_database() as url:
        asyncio.run(run(url, args.connections, args.events, args.fanout_events))
    return 0


if __name__ == "__main__":
    sys.exit(main())
