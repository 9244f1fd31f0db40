"""Reconnect storm: how fast the hub lets clients (back) in, and what each costs it in CPU, beside a
minimal ``websockets`` server doing the same WebSocket and SignalR handshakes.

For each server: ``--rounds`` rounds of ``--connections`` clients (each its own token, as its own
device of one user; the token in the query, as browsers send it), ``--in-flight`` connecting at a
time, all through the SignalR handshake; then all closed. The first round finds the hub fresh
(after a restart: nothing cached), later ones are the same clients coming back. Then one storm:
all of them at once, while ``RESIDENT`` clients of another user stay connected and hear that
user's events, published at ``EVENTS_PER_SECOND`` (before the storm, quiet, then all through it):
their latency, from an event's publication to its arrival, during the storm against the quiet
one. (Hubs only: the websockets server sends every event to every client, whoever it is for.) Clients are C
(bench/wsclients.c) in processes of their own.

Printed per server, median and spread of ``--runs`` runs: accepted connections per second and
server CPU milliseconds per accepted connection, cold and warm, with the ratio to the websockets
server of the same run; and the storm's time until every client was in, how many failed, and the
connected clients' p50 and p99 latency during it, over those of the quiet seconds before.

    python bench/reconnect.py [--connections 5000] [--in-flight 100] [--runs 3] [--old-hub CHECKOUT]
    python bench/reconnect.py --anonymous    # the same on the anonymous hub: no token, no database
    python bench/reconnect.py --profile hub.prof   # rounds against the hub alone, under cProfile
    python bench/reconnect.py --hub-only --runs 1  # the hub alone, no ratios: a quick look

Uses DATABASE_URL (a scratch database is created and dropped) or an embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fanout import DOMAIN, _cpu, seed  # noqa: E402
from bench.scratch import (  # noqa: E402
    free_port, percentile, print_row, print_table_head, run_on_scratch_database,
    spread, until_alive)
from bench.wsclients import ClientProcess  # noqa: E402
from core.keystore import load_signing_key  # noqa: E402
from core.tokens import TokenIssuer  # noqa: E402
from db.events import CHANNEL, PushType  # noqa: E402

#: Clients of another user connected through the storm, whose latency is measured (one in 20 is
#: a probe).
RESIDENT = 200
#: Events published for the user while they listen; each goes to every connected client.
EVENTS_PER_SECOND = 20
QUIET_SECONDS = 3.0


@dataclass
class Round:
    seconds: float
    cpu: float
    failed: int

    def rate(self, connections: int) -> float:
        return connections / self.seconds

    def cpu_ms(self, connections: int) -> float:
        return self.cpu * 1000 / max(1, connections - self.failed)


@dataclass
class Latency:
    """The resident clients' (p50, p99) ms, in the quiet seconds before the storm and during it."""

    quiet: tuple[float, float]
    storm: tuple[float, float]


@dataclass
class Outcome:
    rounds: list[Round] = field(default_factory=list)
    storm: Round | None = None
    latency: Latency | None = None


def _start(kind: str, url: str, port: int, connections: int, old_hub: str | None,
           profile: str | None) -> subprocess.Popen[bytes]:
    if kind == "websockets":
        return subprocess.Popen([sys.executable, str(Path(__file__).with_name("fanout.py")), "--serve-websockets",
                                 str(port), url])
    env = {**os.environ, "DATABASE_URL": url, "WEBSOCKET_ADDRESS": "127.0.0.1", "WEBSOCKET_PORT": str(port),
           "DOMAIN": DOMAIN, "LOG_LEVEL": "warning", "HUB_WORKERS": "1",
           # room for a round's clients while the last round's are still being let go
           "HUB_MAX_CONNECTIONS_PER_USER": str(3 * connections), "HUB_MAX_CONNECTIONS_PER_IP": str(3 * connections),
           "HUB_MAX_CONNECTIONS": str(3 * connections), "HUB_MAX_ANONYMOUS_CONNECTIONS": str(3 * connections),
           # no pace: every client of every round comes from this machine's one address
           "HUB_RATELIMIT_MAX_BURST": "1000000",
           "HUB_HANDSHAKE_TIMEOUT": "60"}
    if kind == "old-hub" and old_hub:
        env["PYTHONPATH"] = old_hub
    command = [sys.executable, *(["-m", "cProfile", "-o", profile] if profile else []), "-m", "pgwarden.cli", "hub"]
    return subprocess.Popen(command, env=env, cwd=old_hub if kind == "old-hub" else None)


async def _round(server: subprocess.Popen[bytes], port: int, paths: list[str], in_flight: int,
                 all_in: asyncio.Event | None = None) -> Round:
    cpu_before = _cpu(server.pid)[0]
    client = ClientProcess(port, paths, in_flight)
    try:
        seconds = await client.ready()
        if all_in is not None:
            all_in.set()
        cpu = _cpu(server.pid)[0] - cpu_before
        client.stop()
    finally:
        client.kill()
    await _until_idle(server.pid)  # the server lets the closed connections go, outside the next count
    return Round(seconds, cpu, client.failed)


async def _resident_user(url: str, count: int) -> tuple[str, list[str]]:
    """A second user with ``count`` devices' tokens, signed as bench/fanout.py's seed signs them."""
    conn = await asyncpg.connect(url)
    try:
        issuer = TokenIssuer(await load_signing_key(conn, None), f"{DOMAIN}|login", 3600 * 6)
        row = await conn.fetchrow("INSERT INTO users (email, password_hash, key) VALUES ('resident@bench', 'h', 'k')"
                                  " RETURNING id::text, security_stamp::text")
        return row["id"], [issuer.issue({"sub": row["id"], "sstamp": row["security_stamp"],
                                         "device": str(uuid.uuid4())}) for _ in range(count)]
    finally:
        await conn.close()


async def _storm(server: subprocess.Popen[bytes], port: int, paths: list[str], resident_paths: list[str],
                 url: str, user: str) -> tuple[Round, Latency]:
    """All clients at once, timed as a round, while the resident clients hear events."""
    resident = ClientProcess(port, resident_paths)
    publisher = await asyncpg.connect(url)
    try:
        await resident.ready()
        quiet_from = time.time()
        await _publish(publisher, user, lambda: time.time() - quiet_from < QUIET_SECONDS)
        storm_from = time.time()
        all_in = asyncio.Event()
        storm = asyncio.create_task(_round(server, port, paths, len(paths), all_in))
        await _publish(publisher, user, lambda: not all_in.is_set() and not storm.done())
        round_ = await storm
        storm_until = storm_from + round_.seconds
        received = resident.stop()
    finally:
        await publisher.close()
        resident.kill()
    latencies = sorted(received.latencies)

    def within(start: float, end: float) -> tuple[float, float]:
        values = [ms for _, ms in latencies[bisect_left(latencies, (start, -1.0)):bisect_left(latencies, (end, -1.0))]]
        return (percentile(values, 0.5), percentile(values, 0.99)) if values else (float("nan"), float("nan"))

    return round_, Latency(within(quiet_from, storm_from), within(storm_from, storm_until))


async def _publish(publisher: asyncpg.Connection, user: str, going_on: Callable[[], bool]) -> None:
    """Events for the user at EVENTS_PER_SECOND, dated at publication, while ``going_on()``."""
    while going_on():
        await publisher.execute("SELECT pg_notify($1, $2)", CHANNEL, json.dumps({
            "type": int(PushType.SYNC_FOLDER_UPDATE), "user": user, "org": None, "item": str(uuid.uuid4()),
            "date": datetime.now(timezone.utc).isoformat(), "device": None, "collections": None,
            "moved_from": None}))
        await asyncio.sleep(1 / EVENTS_PER_SECOND)


async def _until_idle(pid: int) -> None:
    for _ in range(60):
        before = _cpu(pid)[0]
        await asyncio.sleep(0.5)
        if _cpu(pid)[0] - before < 0.02:
            return


async def run_server(kind: str, url: str, user: str, tokens: list[str], resident: list[str],
                     args: argparse.Namespace) -> Outcome:
    port = free_port()
    server = _start(kind, url, port, len(tokens), args.old_hub, args.profile)
    paths = ([f"/notifications/anonymous-hub?Token={uuid.uuid4()}" for _ in tokens] if args.anonymous else
             [f"/notifications/hub?access_token={token}" for token in tokens])
    resident_paths = [f"/notifications/hub?access_token={token}" for token in resident]
    outcome = Outcome()
    try:
        await until_alive(port, kind)
        await asyncio.sleep(1.0)
        for _ in range(args.rounds):
            outcome.rounds.append(await _round(server, port, paths, args.in_flight))
        if args.storm and kind == "websockets":
            outcome.storm = await _round(server, port, paths, len(paths))
        elif args.storm:
            outcome.storm, outcome.latency = await _storm(server, port, paths, resident_paths, url, user)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            print(f"{kind} did not stop within 30 s", file=sys.stderr)
            server.kill()
    return outcome


async def bench(url: str, args: argparse.Namespace) -> None:
    _, tokens = await seed(url, args.connections)
    user, resident = await _resident_user(url, RESIDENT)
    if args.profile:
        await run_server("hub-1", url, user, tokens, resident, args)
        print(f"profile written to {args.profile}")
        return
    kinds = ([] if args.hub_only else ["websockets"]) + (["old-hub"] if args.old_hub else []) + ["hub-1"]
    outcomes: dict[str, list[Outcome]] = {kind: [] for kind in kinds}
    n = args.connections
    for run in range(args.runs):
        for kind in kinds:
            outcome = await run_server(kind, url, user, tokens, resident, args)
            outcomes[kind].append(outcome)
            storm, latency = outcome.storm, outcome.latency
            print(f"run {run + 1} {kind}: rounds " + ", ".join(
                f"{r.rate(n):,.0f}/s {r.cpu_ms(n):.2f} ms CPU{f' ({r.failed} failed)' if r.failed else ''}"
                for r in outcome.rounds)
                + (f"; storm {storm.seconds:.1f} s, {storm.failed} failed" if storm else "")
                + (f", latency p50/p99 quiet {latency.quiet[0]:.1f}/{latency.quiet[1]:.1f} ms,"
                   f" storm {latency.storm[0]:.1f}/{latency.storm[1]:.1f} ms" if latency else ""), flush=True)

    who = "anonymous-hub clients" if args.anonymous else "clients of one user, token in the query"
    print(f"\nreconnect: {n} {who}, {args.in_flight} connecting at a time; "
          f"median [min-max] of {args.runs} runs, ratios to the websockets server of the same run\n")
    columns = [("server", 10), ("cold accepted/s", 22), ("vs websockets", 18), ("cold CPU ms/conn", 20),
               ("warm accepted/s", 22), ("vs websockets", 18), ("warm CPU ms/conn", 20),
               (f"all {n} at once: s", 22), ("failed", 12), ("p50 storm/quiet", 18), ("p99 storm/quiet", 18)]
    print_table_head(columns)
    base = outcomes.get("websockets", [])

    def ratio(values: list[float], baseline: list[float]) -> str:
        if not baseline:
            return "-"
        return spread([v / b for v, b in zip(values, baseline, strict=True) if b > 0], ".2f")

    def rates(runs: list[Outcome], warm: bool) -> list[float]:
        chosen = [o.rounds[1:] if warm else o.rounds[:1] for o in runs]
        return [statistics.median(r.rate(n) for r in rounds) for rounds in chosen if rounds]

    def cpu(runs: list[Outcome], warm: bool) -> list[float]:
        chosen = [o.rounds[1:] if warm else o.rounds[:1] for o in runs]
        return [statistics.median(r.cpu_ms(n) for r in rounds) for rounds in chosen if rounds]

    for kind in kinds:
        runs = outcomes[kind]
        storms = [o.storm for o in runs if o.storm]
        cells = [kind, spread(rates(runs, False), ",.0f"), ratio(rates(runs, False), rates(base, False)),
                 spread(cpu(runs, False), ".2f"), spread(rates(runs, True), ",.0f"),
                 ratio(rates(runs, True), rates(base, True)), spread(cpu(runs, True), ".2f"),
                 spread([s.seconds for s in storms], ".1f"), spread([float(s.failed) for s in storms], ".0f"),
                 *(spread([o.latency.storm[q] / o.latency.quiet[q] for o in runs if o.latency], ".2f") for q in (0, 1))]
        print_row(cells, columns)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--in-flight", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--storm", action=argparse.BooleanOptionalAction, default=True,
                        help="end with all clients connecting at once")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--old-hub", metavar="CHECKOUT", help="also run the hub of this checkout")
    parser.add_argument("--anonymous", action="store_true",
                        help="clients of the anonymous hub (a device waiting for a login approval: no token)")
    parser.add_argument("--hub-only", action="store_true",
                        help="leave out the websockets server (no ratios to it): a quick look at the hub")
    parser.add_argument("--profile", metavar="FILE", help="run the hub alone under cProfile, write its stats here")
    args = parser.parse_args()
    if args.profile:
        args.rounds, args.storm, args.runs = max(args.rounds, 2), False, 1
    return run_on_scratch_database(bench, args)


if __name__ == "__main__":
    sys.exit(main())
