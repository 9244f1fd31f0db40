"""How much one process carries: the figures behind docs/scaling.md.

Measured in one run, each beside a floor measured in the same run on the same machine:

- hub: resident memory per idle connection (one user each, as devices are), and notifications
  per second one hub decodes and delivers when a burst of them arrives, with the hub's CPU per
  notification; the floor is a bare asyncpg LISTEN that only decodes the same burst (the client
  and LISTEN workers of bench/hub_latency.py);
- database: notifying commits per second (the API's write transaction, a folder INSERT with
  the acting device set, whose trigger publishes), for 1 and 8 writers; the floor is the same
  transaction into a copy of the table without the trigger;
- replication (--replication, as root or the postgres user): the same notifying commits on a
  primary of this run's own with a streaming standby on loopback, asynchronous and then
  synchronous (synchronous_standby_names = '*'); the floor is the asynchronous figure;
- API: requests per second one `pgwarden api` process serves, and its CPU per request, for a
  sync of a vault of --items items and for a folder creation, with the CPU that PostgreSQL's
  backends of the API's pool spent per request; the floor is GET /api/version, which touches
  no database.

Prints tables; asserts nothing. The load comes from this machine, so on a small machine the
clients compete with the servers for the cores: the CPU per request or notification is the
figure that carries over to another machine, the rates are this machine's.

    python bench/capacity.py [--connections 2000] [--events 20000] [--seconds 5] [--items 200]
                             [--replication]

Uses DATABASE_URL (a scratch database is created and dropped) or an embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.api_stalls import ENC, access_token  # noqa: E402
from bench.hub_latency import DOMAIN, WORKERS, Listeners  # noqa: E402
from bench.scratch import execute, free_port, scratch_database, until_alive  # noqa: E402
from core.keystore import ensure_signing_key, load_signing_key  # noqa: E402
from core.tokens import TokenIssuer  # noqa: E402
from db import migrate  # noqa: E402



def _more_files() -> None:
    """Raise this process's open-file limit to its hard limit: a socket is a file."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _start(command: str, url: str, port: int, **settings: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DATABASE_URL": url, "DOMAIN": DOMAIN, "LOG_LEVEL": "warning", **settings}
    if command == "api":
        env |= {"API_ADDRESS": "127.0.0.1", "API_PORT": str(port)}
    else:
        env |= {"WEBSOCKET_ADDRESS": "127.0.0.1", "WEBSOCKET_PORT": str(port)}
    return subprocess.Popen([sys.executable, "-m", "pgwarden.cli", command], env=env, preexec_fn=_more_files)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:  # never outlive the run, whatever the machine's load
        process.kill()
        process.wait()


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def row(name: str, value: str, ratio: str = "") -> None:
    print(f"| {name:<62} | {value:>16} | {ratio:>15} |")


def header(title: str, floor: str) -> None:
    print(f"\n{title}\n")
    print(f"| {'measure':<62} | {'value':>16} | {floor:>15} |")
    print(f"|{'-' * 64}|{'-' * 18}|{'-' * 17}|")


# -- hub ----------------------------------------------------------------------------------------


async def _users(url: str, count: int) -> tuple[list[str], list[str]]:
    """count users made in SQL, and an access token for each, signed with the database's key."""
    conn = await asyncpg.connect(url)
    try:
        await ensure_signing_key(conn)
        issuer = TokenIssuer(await load_signing_key(conn, None), f"{DOMAIN}|login", 3600)
        rows = await conn.fetch(
            "INSERT INTO users (email, password_hash, key)"
            " SELECT 'u' || n || '@bench', 'h', 'k' FROM generate_series(1, $1) n"
            " RETURNING id::text, security_stamp::text", count)
        tokens = [issuer.issue({"sub": r["id"], "sstamp": r["security_stamp"], "device": str(uuid.uuid4())})
                  for r in rows]
        return [r["id"] for r in rows], tokens
    finally:
        await conn.close()


async def _burst(url: str, user_ids: list[str], events: int) -> float:
    """events notifications in the hub's format, spread over the users, in one commit; its time."""
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            await conn.execute(
                "SELECT pgwarden_notify(7, u, NULL, gen_random_uuid(), clock_timestamp(), NULL)"
                " FROM unnest($1::uuid[]) u, generate_series(1, $2)",
                user_ids, max(1, events // len(user_ids)))
            started = time.time()
        return started
    finally:
        await conn.close()


async def measure_hub(url: str, connections: int, events: int) -> dict[str, float]:
    user_ids, tokens = await _users(url, connections)
    events = (events // connections) * connections
    port = free_port()
    limit = str(connections + 100)
    hub = _start("hub", url, port, HUB_MAX_CONNECTIONS=limit, HUB_MAX_CONNECTIONS_PER_IP=limit,
                 HUB_RATELIMIT_MAX_BURST=limit)
    listeners = Listeners()
    try:
        await until_alive(port, "hub")
        await asyncio.sleep(1.0)
        process = psutil.Process(hub.pid)
        rss_before = process.memory_info().rss
        ws_url = f"ws://127.0.0.1:{port}/notifications/hub"
        # the clients of bench/hub_latency.py (this process's file limit is theirs), and its bare LISTEN
        await listeners.start(ws_url, [tokens[i::WORKERS] for i in range(WORKERS)], url)
        await asyncio.sleep(3.0)  # idle: let allocations settle
        rss_idle = process.memory_info().rss
        cpu_before = _cpu(process)
        committed = await _burst(url, user_ids, events)
        await asyncio.sleep(max(5.0, events / 2000))
        cpu_burst = _cpu(process) - cpu_before
        collected = listeners.collect()
    finally:
        listeners.join()
        _stop(hub)
    delivered = [t for kind, received in collected if kind == "hub" for _, t in received]
    floor = [t for kind, received in collected if kind == "floor" for _, t in received]
    hub_rate = len(delivered) / (max(delivered) - committed) if delivered else float("nan")
    floor_rate = len(floor) / (max(floor) - committed) if floor else float("nan")
    figures = {
        "per_connection_kib": (rss_idle - rss_before) / connections / 1024,
        "hub_rate": hub_rate, "floor_rate": floor_rate,
        "cpu_us_per_event": cpu_burst / max(1, len(delivered)) * 1e6,
    }
    header(f"hub: {connections} idle connections (one user each), then a burst of {events} notifications"
           f" ({events // connections} per connection) in one commit", "vs bare LISTEN")
    row("hub RSS before clients", f"{rss_before / 2**20:.1f} MiB")
    row(f"hub RSS with {connections} idle connections", f"{rss_idle / 2**20:.1f} MiB")
    row("hub RSS per idle connection", f"{figures['per_connection_kib']:.1f} KiB")
    row(f"notifications delivered (of {events}) / heard by bare LISTEN", f"{len(delivered)} / {len(floor)}")
    row("notifications per second, commit to last delivered", f"{hub_rate:,.0f}", f"{hub_rate / floor_rate:.2f}x")
    row("bare LISTEN: decoded per second (floor)", f"{floor_rate:,.0f}", "1.00x")
    row("hub CPU per notification delivered", f"{figures['cpu_us_per_event']:.0f} us")
    return figures


# -- database: notifying commits ------------------------------------------------------------


async def _commits(url: str, table: str, writers: int, seconds: float) -> float:
    conns = [await asyncpg.connect(url) for _ in range(writers)]
    try:
        users = [await conns[0].fetchval(
            "INSERT INTO users (email, password_hash, key) VALUES ($1, 'h', 'k') RETURNING id",
            f"{uuid.uuid4().hex}@bench") for _ in range(writers)]
        done = 0
        deadline = time.monotonic() + seconds

        async def write(conn: asyncpg.Connection, user: uuid.UUID) -> None:
            nonlocal done
            while time.monotonic() < deadline:
                async with conn.transaction():  # as vaultapi.publish.write does it
                    await conn.execute("SELECT set_config('pgwarden.device_identifier', $1, true)", "bench-device")
                    await conn.execute(f"INSERT INTO {table} (user_id, name) VALUES ($1, $2)", user, ENC)
                done += 1

        started = time.monotonic()
        await asyncio.gather(*(write(conn, user) for conn, user in zip(conns, users)))
        return done / (time.monotonic() - started)
    finally:
        for conn in conns:
            await conn.close()


async def _plain_table(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        # the same columns, defaults and keys, no trigger: the same commit without its NOTIFY
        await conn.execute("CREATE TABLE folders_plain (LIKE folders INCLUDING DEFAULTS INCLUDING INDEXES)")
    finally:
        await conn.close()


async def measure_database(url: str, seconds: float) -> dict[str, float]:
    await _plain_table(url)
    header(f"database: folder INSERT transactions as the API sends them, {seconds:.0f} s each",
           "vs no trigger")
    figures: dict[str, float] = {}
    for writers in (1, 8):
        plain = await _commits(url, "folders_plain", writers, seconds)
        notifying = await _commits(url, "folders", writers, seconds)
        figures[f"commits_{writers}"] = notifying
        row(f"{writers} writer(s): notifying commits per second", f"{notifying:,.0f}", f"{notifying / plain:.2f}x")
        row(f"{writers} writer(s): same commit, no trigger (floor)", f"{plain:,.0f}", "1.00x")
    return figures


def measure_replication(seconds: float) -> None:
    from tests.support.pgcluster import Server, Workspace

    with tempfile.TemporaryDirectory() as logs:
        workspace = Workspace(Path(logs))
        servers: list[Server] = []
        try:
            servers.append(primary := Server.primary(workspace, durable=True))
            servers.append(primary.standby())
            asyncio.run(execute(primary.url(), "CREATE DATABASE pgwarden"))
            url = primary.url("pgwarden")
            migrate.upgrade(url)
            asyncio.run(_plain_table(url))
            header(f"replication: a primary and a streaming standby on loopback (fsync on), 8 writers, {seconds:.0f} s"
                   " each", "vs asynchronous")
            figures = {}
            for mode, standbys in (("asynchronous", ""), ("synchronous", "*")):
                asyncio.run(execute(url, f"ALTER SYSTEM SET synchronous_standby_names = '{standbys}'"))
                asyncio.run(execute(url, "SELECT pg_reload_conf()"))
                time.sleep(1.0)
                figures[mode] = asyncio.run(_commits(url, "folders", 8, seconds))
                plain = asyncio.run(_commits(url, "folders_plain", 8, seconds))
                ratio = f"{figures[mode] / figures['asynchronous']:.2f}x"
                row(f"{mode}: notifying commits per second", f"{figures[mode]:,.0f}", ratio)
                row(f"{mode}: same commit, no trigger", f"{plain:,.0f}")
        finally:
            for server in reversed(servers):
                server.stop("fast")
            workspace.remove()


# -- API: requests ------------------------------------------------------------------------------


async def _import_vault(api: str, token: str, items: int) -> None:
    item = {"type": 1, "name": ENC, "notes": None,
            "login": {"username": ENC, "password": ENC, "uris": [{"uri": ENC, "match": None}]}}
    folders = max(1, items // 20)
    body = {"ciphers": [item] * items, "folders": [{"name": ENC}] * folders,
            "folderRelationships": [{"key": n, "value": n % folders} for n in range(items)]}
    async with httpx.AsyncClient(base_url=api, headers={"Authorization": f"Bearer {token}"}) as client:
        (await client.post("/api/ciphers/import", json=body, timeout=120)).raise_for_status()


async def _backends(url: str) -> list[psutil.Process]:
    """The server processes of every other session on the scratch database: the API's pool."""
    conn = await asyncpg.connect(url)
    try:
        pids = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                                " AND pid <> pg_backend_pid()")
    finally:
        await conn.close()
    return [psutil.Process(row["pid"]) for row in pids]


async def _rate(api: str, token: str, processes: list[psutil.Process], seconds: float, concurrency: int,
                send: Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]) -> tuple[float, ...]:
    """Requests per second, then the CPU milliseconds per request of each of the processes."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=api, headers={"Authorization": f"Bearer {token}"}, limits=limits,
                                 timeout=30) as client:
        done = 0
        deadline = time.monotonic() + seconds

        async def loop() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                (await send(client)).raise_for_status()
                done += 1

        cpu = [_cpu(process) for process in processes]
        started = time.monotonic()
        await asyncio.gather(*(loop() for _ in range(concurrency)))
        elapsed = time.monotonic() - started
        spent = [(_cpu(process) - before) / max(1, done) * 1000 for process, before in zip(processes, cpu)]
        return (done / elapsed, *spent)


async def measure_api(url: str, items: int, seconds: float) -> dict[str, float]:
    port = free_port()
    api = _start("api", url, port)
    try:
        await until_alive(port, "API")
        base = f"http://127.0.0.1:{port}"
        token = await access_token(url)
        await _import_vault(base, token, items)
        process = psutil.Process(api.pid)
        concurrency = 8
        sync_path = "/api/sync"
        # the pool opens its connections (up to one per client) before its backends are counted
        await _rate(base, token, [process], 1.0, concurrency, lambda c: c.get(sync_path))
        backends = await _backends(url)

        async def run(send: Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]) -> tuple[float, float, float]:
            rate, api_ms, *db_ms = await _rate(base, token, [process, *backends], seconds, concurrency, send)
            return rate, api_ms, sum(db_ms)

        floor = await run(lambda c: c.get("/api/version"))
        sync = await run(lambda c: c.get(sync_path))
        write = await run(lambda c: c.post("/api/folders", json={"name": ENC}))
    finally:
        _stop(api)
    header(f"API: one `pgwarden api` process, {concurrency} clients on keep-alive connections, {seconds:.0f} s"
           f" each; the vault: {items} items", "vs /api/version")
    for name, (rate, api_ms, db_ms) in (("GET /api/version (floor)", floor), (f"GET /api/sync ({items} items)", sync),
                                        ("POST /api/folders (a notifying write)", write)):
        row(f"{name}: requests per second", f"{rate:,.0f}", f"{rate / floor[0]:.2f}x")
        row(f"{name}: API CPU per request", f"{api_ms:.2f} ms", f"{api_ms / floor[1]:.2f}x")
        if db_ms:
            row(f"{name}: PostgreSQL CPU per request", f"{db_ms:.2f} ms")
    return {"sync_rps": sync[0], "sync_cpu_ms": sync[1], "sync_db_ms": sync[2],
            "write_rps": write[0], "write_cpu_ms": write[1], "write_db_ms": write[2]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--replication", action="store_true", help="also build a primary and a standby")
    args = parser.parse_args()
    _more_files()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start")
    with scratch_database() as url:
        asyncio.run(measure_hub(url, args.connections, args.events))
        asyncio.run(measure_database(url, args.seconds))
        asyncio.run(measure_api(url, args.items, args.seconds))
    if args.replication:
        measure_replication(args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
