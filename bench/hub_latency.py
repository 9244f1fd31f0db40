"""Commit -> client latency through the hub under a steady load of events, beside a bare asyncpg
LISTEN callback on the same commits (the floor), measured in the same run.

``--connections`` clients (bench/wsclients.c, two processes) sign in as ``--per-user`` devices of
each of connections / per-user users. Events are published at ``--rate`` per second for
``--seconds``, each a NOTIFY of its own (one autocommit ``pg_notify``, from a few publishing
connections), to the users in turn: every event goes to that user's ``--per-user`` connections.
Each event's date is taken just before its statement is sent; every client notes each message's
arrival against that date (its RevisionDate), and a bare LISTEN connection in a process of its own
notes each notification's arrival in its callback against the same date. So both clocks start at
the same instant, and the ratio of the hub's percentiles to the floor's is the hub's cost.

Then the same run again with a minimal relay in place of the hub (``--relay``, on by default): a
``websockets`` server on uvloop with its own LISTEN, which sends each event, encoded once, to its
user's connections with ``websockets.broadcast``, and does nothing else (no token check, no
keepalive, no limits, no metrics). It pays what any server pays and the bare callback does not:
the hop from the LISTEN process to a client process through a WebSocket. Its ratio to the floor is
what that hop costs on this machine, and the hub's ratio to it what the hub adds.

A run lasts long enough to include the hub's keepalive tick (a Ping to every connection every 15 s),
as a real hub's load does.

Prints, for each percentile, the median [min-max] of ``--runs`` runs and of the per-run ratio
to the floor; asserts nothing.

    python bench/hub_latency.py [--connections 10000] [--per-user 2] [--rate 2000] [--seconds 20] [--runs 3] [--no-relay]

Uses DATABASE_URL (a scratch database is created and dropped) or an embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scratch import (  # noqa: E402
    folder_event, free_port, percentile, print_row, print_table_head, run_on_scratch_database, spread, until_alive)
from bench.wsclients import ClientProcess  # noqa: E402
from core.keystore import ensure_signing_key, load_signing_key  # noqa: E402
from core.tokens import TokenIssuer  # noqa: E402
from db.events import CHANNEL  # noqa: E402

DOMAIN = "https://bench.invalid"
CLIENT_PROCESSES = 2
PUBLISHERS = 4
SLOW = 50.0  # ms
QUANTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999), ("max", 1.0))


# -- the floor: a bare LISTEN in a process of its own -------------------------------------------


async def _floor(database_url: str, ready: Any, stop: Any, results: Any) -> None:
    arrivals: list[tuple[str, float]] = []
    conn = await asyncpg.connect(database_url)
    await conn.add_listener(CHANNEL, lambda _c, _p, _ch, payload: arrivals.append((payload, time.time())))
    ready.set()
    while not stop.is_set():
        await asyncio.sleep(0.05)
    await conn.close()
    # after the run: the callback itself did nothing but note the time
    results.put([(origin, (at - origin) * 1000)
                 for payload, at in arrivals
                 for origin in (datetime.fromisoformat(json.loads(payload)["date"]).timestamp(),)])


def floor_process(database_url: str, ready: Any, stop: Any, results: Any) -> None:
    asyncio.run(_floor(database_url, ready, stop, results))


# -- the relay: a minimal websockets server that forwards each event to its user -----------------


def serve_relay(port: int, database_url: str) -> None:
    import uvloop
    from websockets.asyncio.server import broadcast, serve

    from bench.fanout import answer_alive
    from db.events import decode_event
    from wshub.codec import MessagePackProtocol
    from wshub.notifications import receive_message

    async def main() -> None:
        by_user: dict[str, set[Any]] = {}
        protocol = MessagePackProtocol()

        async def handler(ws: Any) -> None:
            token = parse_qs(urlsplit(ws.request.path).query)["access_token"][0]
            user = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))["sub"]  # unverified
            await ws.recv()
            await ws.send("{}\x1e")
            by_user.setdefault(user, set()).add(ws)
            try:
                await ws.wait_closed()
            finally:
                by_user[user].discard(ws)

        def on_notify(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            event = decode_event(payload)
            connections = by_user.get(event.user_id or "")
            if connections:
                broadcast(connections, protocol.encode(receive_message(event)))

        listener = await asyncpg.connect(database_url)
        await listener.add_listener(CHANNEL, on_notify)
        async with serve(handler, "127.0.0.1", port, ping_interval=None, compression=None,
                         process_request=answer_alive, max_queue=None):
            await asyncio.Future()

    uvloop.run(main())


# -- one run ------------------------------------------------------------------------------------


@dataclass
class Run:
    server: list[float]  # ms, every message a client received
    floor: list[float]  # ms, every notification the bare LISTEN heard
    published: int
    expected: int  # messages, published x per user
    delivered: int
    server_cpu: float  # seconds, while publishing and draining
    #: second of publishing -> messages published in it that took over SLOW ms: where the tail is
    slow: dict[int, int]
    server_age: float  # seconds from the server's start to the first event


async def seed(url: str, users: int, per_user: int) -> tuple[list[str], list[list[str]]]:
    """``users`` accounts: their ids, and each one's ``per_user`` tokens, one per device."""
    conn = await asyncpg.connect(url)
    try:
        await ensure_signing_key(conn)
        issuer = TokenIssuer(await load_signing_key(conn, None), f"{DOMAIN}|login", 3600 * 6)
        rows = await conn.fetch(
            "INSERT INTO users (email, password_hash, key) SELECT 'u' || n || '@bench', 'h', 'k'"
            " FROM generate_series(1, $1) AS n RETURNING id::text, security_stamp::text", users)
        return [row["id"] for row in rows], [
            [issuer.issue({"sub": row["id"], "sstamp": row["security_stamp"], "device": str(uuid.uuid4())})
             for _ in range(per_user)] for row in rows]
    finally:
        await conn.close()


def _start_server(kind: str, url: str, port: int, connections: int, workers: int) -> subprocess.Popen[bytes]:
    if kind == "relay":
        return subprocess.Popen([sys.executable, __file__, "--serve-relay", str(port), url])
    env = {**os.environ, "DATABASE_URL": url, "WEBSOCKET_ADDRESS": "127.0.0.1", "WEBSOCKET_PORT": str(port),
           "DOMAIN": DOMAIN, "LOG_LEVEL": "warning", "HUB_WORKERS": str(workers),
           "HUB_MAX_CONNECTIONS_PER_IP": str(connections + 10), "HUB_MAX_CONNECTIONS": str(connections + 10),
           "HUB_RATELIMIT_MAX_BURST": str(connections + 10)}
    return subprocess.Popen([sys.executable, "-m", "pgwarden.cli", "hub"], env=env)


def _cpu(pid: int) -> float:
    parent = psutil.Process(pid)
    total = 0.0
    for process in [parent, *parent.children(recursive=True)]:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


async def _publish(url: str, users: list[str], rate: float, seconds: float) -> tuple[float, int]:
    """NOTIFYs at ``rate`` per second for ``seconds``, to the users in turn; when they began, and
    how many went."""
    count = round(rate * seconds)
    publishers = [await asyncpg.connect(url) for _ in range(PUBLISHERS)]
    start = time.time() + 0.1

    async def publish(k: int, conn: asyncpg.Connection) -> None:
        for n in range(k, count, PUBLISHERS):
            delay = start + n / rate - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, folder_event(users[n % len(users)]))

    try:
        await asyncio.gather(*(publish(k, conn) for k, conn in enumerate(publishers)))
    finally:
        for conn in publishers:
            await conn.close()
    return start, count


async def run_once(kind: str, url: str, tokens: list[list[str]], users: list[str], args: argparse.Namespace) -> Run:
    connections = sum(len(of_user) for of_user in tokens)
    paths = [f"/notifications/hub?access_token={token}" for of_user in tokens for token in of_user]
    port = free_port()
    server = _start_server(kind, url, port, connections, args.hub_workers)
    server_started = time.time()
    ctx = mp.get_context("spawn")
    ready, stop, results = ctx.Event(), ctx.Event(), ctx.Queue()
    floor = ctx.Process(target=floor_process, args=(url, ready, stop, results))
    clients: list[ClientProcess] = []
    try:
        await until_alive(port, kind)
        floor.start()
        clients = [ClientProcess(port, paths[i::CLIENT_PROCESSES], probe_every=1) for i in range(CLIENT_PROCESSES)]
        await asyncio.gather(*(client.ready() for client in clients))
        failed = sum(client.failed for client in clients)
        if failed:
            raise RuntimeError(f"{failed} connections failed")
        while not ready.wait(0):
            await asyncio.sleep(0.05)
        await asyncio.sleep(2.0)  # idle: let the connects settle
        cpu_before = _cpu(server.pid)
        start, published = await _publish(url, users, args.rate, args.seconds)
        await asyncio.sleep(args.drain)
        server_cpu = _cpu(server.pid) - cpu_before
        stop.set()
        floor_latencies = await asyncio.to_thread(results.get, True, 120)
        received = [client.stop() for client in clients]
    finally:
        stop.set()
        for client in clients:
            client.kill()
        if floor.pid is not None:
            floor.join(30)
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
    slow: dict[int, int] = {}
    for origin, ms in (entry for part in received for entry in part.latencies):
        if ms > SLOW:
            second = int(origin - start)
            slow[second] = slow.get(second, 0) + 1
    return Run(server=[ms for part in received for _, ms in part.latencies], floor=[ms for _, ms in floor_latencies],
               published=published, expected=published * len(tokens[0]),
               delivered=sum(part.counts[-1][1] for part in received if part.counts), server_cpu=server_cpu,
               slow=dict(sorted(slow.items())), server_age=start - server_started)


# -- the whole benchmark ------------------------------------------------------------------------


async def bench(url: str, args: argparse.Namespace) -> None:
    users, tokens = await seed(url, args.connections // args.per_user, args.per_user)
    kinds = ["hub", "relay"] if args.relay else ["hub"]
    runs: dict[str, list[Run]] = {kind: [] for kind in kinds}
    for number in range(args.runs):
        for kind in kinds:
            run = await run_once(kind, url, tokens, users, args)
            runs[kind].append(run)
            print(f"run {number + 1} {kind}: delivered {run.delivered}/{run.expected}, floor heard {len(run.floor)}/"
                  f"{run.published}; " + ", ".join(
                      f"{name} {percentile(run.server, q):.2f}/{percentile(run.floor, q):.2f} ms" for name, q in QUANTILES)
                  + f" ({kind}/floor); {kind} CPU {run.server_cpu:.1f} s; messages over {SLOW:g} ms by second of"
                  f" publishing (the {kind} started {run.server_age:.1f} s before it): {run.slow or 'none'}", flush=True)

    print(f"\ncommit -> client: {args.connections} connections ({args.per_user} per user), {args.rate:g} events/s "
          f"for {args.seconds:g} s (each a NOTIFY of its own, to the users in turn), hub workers "
          f"{args.hub_workers}; median [min-max] of {args.runs} runs, ratios within each run (hub / relay: the"
          f" hub's ratio to its floor over the relay's to the floor of its own run, of the same run number)\n")
    columns = [("percentile", 10), ("hub ms", 22), ("floor ms", 22), ("hub / floor", 20)]
    if args.relay:
        columns += [("relay ms", 22), ("relay / floor", 20), ("hub / relay", 20)]
    print_table_head(columns)
    for name, q in QUANTILES:
        hub = [percentile(run.server, q) for run in runs["hub"]]
        floor = [percentile(run.floor, q) for run in runs["hub"]]
        row = [name, spread(hub, ".2f"), spread(floor, ".2f"), spread([h / f for h, f in zip(hub, floor, strict=True)], ".2f")]
        if args.relay:
            relay = [percentile(run.server, q) for run in runs["relay"]]
            relay_floor = [percentile(run.floor, q) for run in runs["relay"]]
            relay_ratio = [r / f for r, f in zip(relay, relay_floor, strict=True)]
            row += [spread(relay, ".2f"), spread(relay_ratio, ".2f"),
                    spread([h / f / r for h, f, r in zip(hub, floor, relay_ratio, strict=True)], ".2f")]
        print_row(row, columns)
    for kind in kinds:
        cpu = [run.server_cpu / run.published * 1e6 for run in runs[kind]]
        print(f"\n{kind}: messages delivered {spread([r.delivered / r.expected for r in runs[kind]], '.4f')} of those"
              f" due; CPU per event (its {args.per_user} messages): {spread(cpu, '.0f')} µs", end="")
    print()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--per-user", type=int, default=2, help="connections (devices) per user")
    parser.add_argument("--rate", type=float, default=2000.0, help="events per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds of publishing per run")
    parser.add_argument("--drain", type=float, default=2.0, help="seconds after publishing")
    parser.add_argument("--hub-workers", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--relay", action=argparse.BooleanOptionalAction, default=True,
                        help="also run the minimal relay")
    parser.add_argument("--serve-relay", nargs=2, metavar=("PORT", "DATABASE_URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_relay:
        serve_relay(int(args.serve_relay[0]), args.serve_relay[1])
        return 0
    return run_on_scratch_database(bench, args)


if __name__ == "__main__":
    sys.exit(main())
