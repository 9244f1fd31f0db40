"""Fan-out: how many messages per second the hub sustains to many connections of one user, beside
a minimal ``websockets.broadcast`` server with the same connections and the same frames.

Every server under test hears the same events the same way: a NOTIFY on the events channel,
published by this script at a steady rate in steps (``--rates``, messages per second, each step
``--step`` seconds, a pause after it to drain). All connections belong to one user, so each event
goes to every one of them. The baseline LISTENs on the same channel, encodes the same SignalR
message once and hands it to ``websockets.broadcast``; it runs on uvloop, as the hub does.

Clients run in separate processes (bench/wsclients.c, in C so that they outpace the servers)
and count every message; one connection in 20 also notes for each the time from its publication
(the event's date) to its arrival. A step is sustained when at least 99.9% of
its messages arrived and their p99 is within ``--p99`` ms; a server's figure is the highest step
it sustained. Also measured: server CPU per message (and, per step, the share of it spent in the
kernel), and resident memory per idle handshaken connection (RSS after connecting minus before,
over the connections).

Prints, for each server, the median and spread of ``--runs`` runs and the ratio to the baseline
of the same run. Asserts nothing.

    python bench/fanout.py [--connections 2000] [--hub-workers 1,2] [--runs 3] [--old-hub CHECKOUT]

Server names in the output: ``websockets`` (the baseline), ``hub-N`` (this hub, HUB_WORKERS=N),
``old-hub`` (the hub of ``--old-hub``, for a before/after).

Uses DATABASE_URL (a scratch database is created and dropped) or an embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid
from bisect import bisect_left
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scratch import (  # noqa: E402
    folder_event, free_port, percentile, print_row, print_table_head,
    run_on_scratch_database, spread, until_alive)
from bench.wsclients import ClientProcess  # noqa: E402
from core.keystore import ensure_signing_key, load_signing_key  # noqa: E402
from core.tokens import TokenIssuer  # noqa: E402
from db.events import CHANNEL  # noqa: E402

DOMAIN = "https://bench.invalid"
CLIENT_PROCESSES = 2


# -- the baseline server ------------------------------------------------------------------------


def serve_websockets(port: int, database_url: str) -> None:
    """A minimal websockets server: handshake, then every event broadcast to every connection."""
    import uvloop
    from websockets.asyncio.server import broadcast, serve

    from db.events import decode_event
    from wshub.codec import MessagePackProtocol
    from wshub.notifications import receive_message

    async def main() -> None:
        connected: set[Any] = set()
        protocol = MessagePackProtocol()

        async def handler(ws: Any) -> None:
            await ws.recv()
            await ws.send("{}\x1e")
            connected.add(ws)
            try:
                await ws.wait_closed()
            finally:
                connected.discard(ws)

        def on_notify(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            broadcast(connected, protocol.encode(receive_message(decode_event(payload))))

        listener = await asyncpg.connect(database_url)
        await listener.add_listener(CHANNEL, on_notify)
        async with serve(handler, "127.0.0.1", port, ping_interval=None, compression=None,
                         process_request=answer_alive):
            await asyncio.Future()

    uvloop.run(main())


def answer_alive(connection: Any, request: Any) -> Any:
    if request.path == "/alive":
        return connection.respond(200, "ok\n")
    return None


# -- one server, one run ------------------------------------------------------------------------


@dataclass
class Step:
    rate: int
    sent: int
    received: int
    p99: float
    cpu: float  # server CPU seconds during the step and its drain
    system: float  # of which in the kernel (its socket writes, mostly)

    def sustained(self, p99_limit: float) -> bool:
        return self.received >= 0.999 * self.sent and self.p99 <= p99_limit


@dataclass
class Outcome:
    server: str
    steps: list[Step]
    rss_per_connection: float

    def messages_per_cpu_second(self) -> float:
        complete = [step for step in self.steps if step.received >= 0.999 * step.sent and step.cpu > 0]
        return sum(step.received for step in complete) / sum(step.cpu for step in complete) if complete else 0.0

    def best(self, p99_limit: float) -> Step | None:
        passing = [step for step in self.steps if step.sustained(p99_limit)]
        return max(passing, key=lambda step: step.rate) if passing else None


def _start_server(kind: str, url: str, port: int, connections: int, old_hub: str | None) -> subprocess.Popen[bytes]:
    if kind == "websockets":
        return subprocess.Popen([sys.executable, __file__, "--serve-websockets", str(port), url])
    workers = "1" if kind == "old-hub" else kind.removeprefix("hub-")
    source = {"PYTHONPATH": old_hub} if kind == "old-hub" and old_hub else {}
    env = {**source,**os.environ, "DATABASE_URL": url, "WEBSOCKET_ADDRESS": "127.0.0.1", "WEBSOCKET_PORT": str(port),
           "DOMAIN": DOMAIN, "LOG_LEVEL": "warning", "HUB_WORKERS": workers,
           "HUB_MAX_CONNECTIONS_PER_USER": str(connections + 10),
           "HUB_MAX_CONNECTIONS_PER_IP": str(connections + 10), "HUB_MAX_CONNECTIONS": str(connections + 10),
           "HUB_RATELIMIT_MAX_BURST": str(connections + 10)}
    return subprocess.Popen([sys.executable, "-m", "pgwarden.cli", "hub"], env=env,
                            cwd=old_hub if kind == "old-hub" else None)


def _processes(pid: int) -> list[psutil.Process]:
    parent = psutil.Process(pid)
    return [parent, *parent.children(recursive=True)]


def _cpu(pid: int) -> tuple[float, float]:
    """CPU seconds of the server's processes so far: in all, and in the kernel."""
    total = system = 0.0
    for process in _processes(pid):
        try:
            times = process.cpu_times()
            total += times.user + times.system
            system += times.system
        except psutil.NoSuchProcess:
            pass
    return total, system


def _rss(pid: int) -> int:
    return sum(process.memory_info().rss for process in _processes(pid))


class SetupFailed(RuntimeError):
    """Clients could not all connect before the first step (a loaded machine's SYN queue, most
    often): nothing was measured, and the server is started again."""


#: starts of a server per run before giving up
SETUP_ATTEMPTS = 3


async def run_server(kind: str, url: str, user: str, tokens: list[str], rates: list[int], step_seconds: float,
                     drain: float, old_hub: str | None) -> Outcome:
    connections = len(tokens)
    port = free_port()
    server = _start_server(kind, url, port, connections, old_hub)
    paths = [f"/notifications/hub?access_token={token}" for token in tokens]
    clients: list[ClientProcess] = []
    steps: list[Step] = []
    try:
        await until_alive(port, kind)
        await asyncio.sleep(1.0)
        rss_before = _rss(server.pid)
        clients = [ClientProcess(port, paths[i::CLIENT_PROCESSES]) for i in range(CLIENT_PROCESSES)]
        await asyncio.gather(*(client.ready() for client in clients))
        if sum(client.failed for client in clients):
            raise SetupFailed(f"{kind}: {sum(client.failed for client in clients)} connections failed")
        await asyncio.sleep(2.0)  # idle: let allocations settle
        rss_per_connection = (_rss(server.pid) - rss_before) / connections

        publisher = await asyncpg.connect(url)
        windows: list[tuple[int, float, float, int, float, float]] = []
        try:
            for rate in rates:
                events_per_second = rate / connections
                interval = 1.0 / events_per_second
                count = max(1, round(events_per_second * step_seconds))
                cpu_before = _cpu(server.pid)
                start = time.time()
                for n in range(count):
                    delay = start + n * interval - time.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    await publisher.execute("SELECT pg_notify($1, $2)", CHANNEL, folder_event(user))
                end = time.time()
                await asyncio.sleep(drain)
                cpu_after = _cpu(server.pid)
                windows.append((rate, start - 0.001, end + 0.001, count, cpu_after[0] - cpu_before[0],
                                cpu_after[1] - cpu_before[1]))
        finally:
            await publisher.close()
        received = [client.stop() for client in clients]
    finally:
        for client in clients:
            client.kill()
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()

    def messages_by(moment: float) -> int:
        """Messages all clients had received by then (the last count taken before it)."""
        total = 0
        for part in received:
            index = bisect_left(part.counts, (moment, -1)) - 1
            total += part.counts[index][1] if index >= 0 else 0
        return total

    latencies = sorted((origin, ms) for part in received for origin, ms in part.latencies)
    for number, (rate, start, end, count, cpu, system) in enumerate(windows):
        following = windows[number + 1][1] if number + 1 < len(windows) else float("inf")
        in_step = [ms for origin, ms in latencies[bisect_left(latencies, (start, -1.0)):
                                                   bisect_left(latencies, (end, -1.0))]]
        steps.append(Step(rate, count * connections, messages_by(min(following, end + drain)) - messages_by(start),
                          percentile(in_step, 0.99) if in_step else float("inf"), cpu, system))
    return Outcome(kind, steps, rss_per_connection)


# -- the whole benchmark --------------------------------------------------------------------------


async def seed(url: str, connections: int) -> tuple[str, list[str]]:
    conn = await asyncpg.connect(url)
    try:
        await ensure_signing_key(conn)
        issuer = TokenIssuer(await load_signing_key(conn, None), f"{DOMAIN}|login", 3600 * 6)
        row = await conn.fetchrow(
            "INSERT INTO users (email, password_hash, key) VALUES ('fan@bench', 'h', 'k')"
            " RETURNING id::text, security_stamp::text")
        tokens = [issuer.issue({"sub": row["id"], "sstamp": row["security_stamp"], "device": str(uuid.uuid4())})
                  for _ in range(connections)]
        return row["id"], tokens
    finally:
        await conn.close()


async def bench(url: str, args: argparse.Namespace) -> None:
    user, tokens = await seed(url, args.connections)
    kinds = ["websockets"] + (["old-hub"] if args.old_hub else []) + [f"hub-{n}" for n in args.hub_workers]
    outcomes: dict[str, list[Outcome]] = {kind: [] for kind in kinds}
    for run in range(args.runs):
        for kind in kinds:
            for attempt in range(1, SETUP_ATTEMPTS + 1):
                try:
                    outcome = await run_server(kind, url, user, tokens, args.rates, args.step, args.drain, args.old_hub)
                    break
                except SetupFailed as error:
                    if attempt == SETUP_ATTEMPTS:
                        raise
                    print(f"run {run + 1} {error} before the first step: started again", flush=True)
            outcomes[kind].append(outcome)
            print(f"run {run + 1} {kind}: " + ", ".join(
                f"{s.rate // 1000}k:{s.received / s.sent:.3f}/{s.p99:.0f}ms/{s.cpu:.1f}s"
                f"({s.system / max(s.cpu, 1e-9):.0%} sys)" for s in outcome.steps)
                + f"; idle RSS {outcome.rss_per_connection / 1024:.1f} KiB/connection", flush=True)

    limit = args.p99
    print(f"\nfan-out: {args.connections} connections of one user, {CLIENT_PROCESSES} client processes, "
          f"steps {', '.join(str(r) for r in args.rates)} messages/s of {args.step:g} s; median [min-max] of "
          f"{args.runs} runs, ratios to the websockets server of the same run\n")
    columns = [("server", 10), (f"sustained msg/s, p99<={limit:g}ms", 30), ("vs websockets", 18),
               ("all delivered up to msg/s", 28), ("msgs per CPU-second", 26), ("vs websockets", 18),
               ("idle KiB/conn", 18), ("vs websockets", 18)]
    print_table_head(columns)
    base = outcomes["websockets"]
    for kind in kinds:
        runs = outcomes[kind]
        sustained = [float(o.best(limit).rate) if o.best(limit) else 0.0 for o in runs]
        delivered = [float(o.best(float("inf")).rate) if o.best(float("inf")) else 0.0 for o in runs]
        efficiency = [o.messages_per_cpu_second() for o in runs]
        memory = [o.rss_per_connection / 1024 for o in runs]
        cells = [kind, spread(sustained, ",.0f"), _ratios(sustained, [float(b.best(limit).rate) if b.best(limit)
                                                                       else 0.0 for b in base]),
                 spread(delivered, ",.0f"), spread(efficiency, ",.0f"),
                 _ratios(efficiency, [b.messages_per_cpu_second() for b in base]),
                 spread(memory, ".1f"), _ratios(memory, [b.rss_per_connection / 1024 for b in base])]
        print_row(cells, columns)
    print("\nmsgs per CPU-second: messages delivered per second of server CPU (all its processes), over the steps"
          " every message of which arrived; the machine is shared, so latency varies with its load more than CPU does.")


def _ratios(values: list[float], baseline: list[float]) -> str:
    return spread([v / b for v, b in zip(values, baseline, strict=True) if b > 0], ".2f")


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--serve-websockets":
        serve_websockets(int(sys.argv[2]), sys.argv[3])
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--hub-workers", type=lambda s: [int(n) for n in s.split(",")], default=[1, 2])
    parser.add_argument("--rates", type=lambda s: [int(n) for n in s.split(",")],
                        default=[20_000, 40_000, 60_000, 80_000, 100_000, 130_000, 160_000, 200_000, 250_000, 320_000, 400_000])
    parser.add_argument("--step", type=float, default=2.0, help="seconds per step")
    parser.add_argument("--drain", type=float, default=1.0, help="seconds after each step")
    parser.add_argument("--p99", type=float, default=100.0, help="ms")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--old-hub", metavar="CHECKOUT",
                        help="also run the hub of this checkout (e.g. a worktree of the previous commit), one process")
    return run_on_scratch_database(bench, parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
