"""What publishing costs a writer: vault writes with the event triggers on and off.

Every write workload runs with the triggers of ciphers, folders and sync_events disabled (the
baseline: the same writes, nothing published) and enabled, in the same run on the same
database, and the table shows on/off ratios. With --before REV the same workloads also run
against a second database migrated by that git revision's migrations (the definitions before a
change), interleaved with this tree's, so before and after come from one run on one machine.
Figures are the median of --runs runs, with their spread (±half the range, or [min-max]).

- cipher INSERT and UPDATE at 1 and 8 writers: each writer its own user and connection, one
  transaction per write as the API sends it (BEGIN, set_config of the device, the statement,
  COMMIT); commits/s and the p50/p99 latency of the transaction. A third state, the floor, runs
  the same transactions with the triggers off and one event-sized pg_notify sent by hand: what
  any publishing from the transaction costs, whatever the triggers do. The 8-writer rows also
  show where the writers' backends were, sampled from pg_stat_activity: waiting for the lock
  that serializes notifying commits (Lock:object), flushing WAL (IO:WALSync), or elsewhere;
- import of 1,000 items: one INSERT ... SELECT in a bulk transaction, as vaultapi imports;
- PostgreSQL's own cost of NOTIFY, triggers not involved, at 1, 8 and 16 writers: a commit that
  only notifies (it writes no WAL, so it waits for no flush), a one-row write, and the same
  write with a pg_notify.

    python bench/write_path.py [--runs 3] [--seconds 4] [--before REV] [--breakdown]

--breakdown prints instead where a single-item statement's time goes: the trigger functions'
times from pg_stat_user_functions (track_functions = 'all'), then timing variants of this
tree's definitions (a step removed at a time), with synchronous_commit off so that the commit's
WAL flush stays out of the figures; and a bulk edit after single edits on one connection.

Uses DATABASE_URL (scratch databases are created and dropped) or an embedded PostgreSQL.
Prints tables; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from db import migrate, routines  # noqa: E402
from db.embedded import resolve_database_url  # noqa: E402

__all__ = ["main"]

APPLICATION = "pgwarden-bench-writer"
DEVICE = "bench-device-4f1b2a9e"
WRITERS = 16
IMPORT_ITEMS = 1000
BULK_EDIT = 2000
PUBLISHING_TABLES = ("ciphers", "folders", "sync_events")

# A login item as the clients send it: every field an EncString (type 2, iv|data|mac).
_ENC = "2.Zm9vYmFyYmF6cXV4cXV1eA==|" + "c2VjcmV0" * 6 + "|" + "bWFj" * 11
ITEM = json.dumps({"name": _ENC, "notes": _ENC, "login": {"username": _ENC, "password": _ENC,
                                                         "uris": [{"uri": _ENC, "match": None}]}})
IMPORTED = json.dumps([{"type": 1, "data": json.loads(ITEM)} for _ in range(IMPORT_ITEMS)])

INSERT = "INSERT INTO ciphers (user_id, type, data) VALUES ($1, 1, $2::jsonb)"
UPDATE = "UPDATE ciphers SET data = $2::jsonb WHERE id = $1"
IMPORT = ("INSERT INTO ciphers (user_id, type, data)"
          " SELECT $1, type, data FROM jsonb_to_recordset($2::jsonb) AS c(type smallint, data jsonb)")
SET_DEVICE = "SELECT set_config('pgwarden.device_identifier', $1, true)"
SET_DEVICE_AND_NOTIFY = "SELECT set_config('pgwarden.device_identifier', $1, true), pg_notify('pgwarden_bench', $2)"
EVENT = json.dumps({"type": 0, "user": str(uuid.UUID(int=1)), "org": None, "item": str(uuid.UUID(int=2)),
                    "date": "2026-11-30T10:00:00.000000Z", "device": DEVICE})
SET_BULK = "SELECT set_config('pgwarden.bulk', 'on', true)"

BARE = {
    "notify only (no WAL to flush)": "SELECT pg_notify('pgwarden_bench', $1::text)",
    "one-row write": "INSERT INTO bench_writes (writer) VALUES ($1::text)",
    "one-row write + pg_notify": "WITH w AS (INSERT INTO bench_writes (writer) VALUES ($1::text))"
                                 " SELECT pg_notify('pgwarden_bench', $1::text)",
}


# ---- measurements --------------------------------------------------------------------------


@dataclass
class Load:
    """One timed stretch of writes."""

    commits: int
    seconds: float
    latencies: list[float]
    waits: Counter[str] = field(default_factory=Counter)
    #: CPU time of the writers' backends per commit, in µs (None when the server runs elsewhere)
    cpu: float | None = None

    @property
    def rate(self) -> float:
        return self.commits / self.seconds

    def percentile(self, share: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000


@dataclass
class Target:
    """A writer's own user and item."""

    user: uuid.UUID
    cipher: uuid.UUID


Write = Callable[[asyncpg.Connection, int], Awaitable[object]]


async def timed_writes(url: str, write: Write, writers: int, seconds: float, sample: bool) -> Load:
    """Each writer repeats write(conn, its index) until the time is up; the first ones warm up."""
    conns = [await asyncpg.connect(url, server_settings={"application_name": APPLICATION})
             for _ in range(writers)]
    try:
        for index, conn in enumerate(conns):
            for _ in range(20):  # plans cached, as on a pooled connection
                await write(conn, index)
        latencies: list[list[float]] = [[] for _ in conns]
        stop = asyncio.Event()

        async def writer(index: int) -> None:
            conn, own = conns[index], latencies[index]
            while not stop.is_set():
                started = time.perf_counter()
                await write(conn, index)
                own.append(time.perf_counter() - started)

        pids = [conn.get_server_pid() for conn in conns]
        sampler = asyncio.create_task(sample_waits(url, stop)) if sample else None
        cpu = backends_cpu_micros(pids)
        started = time.perf_counter()
        tasks = [asyncio.create_task(writer(i)) for i in range(writers)]
        await asyncio.sleep(seconds)
        stop.set()
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
        cpu_after = backends_cpu_micros(pids)
        waits = await sampler if sampler else Counter()
        every = [latency for own in latencies for latency in own]
        per_commit = None if cpu is None or cpu_after is None else (cpu_after - cpu) / len(every)
        return Load(len(every), elapsed, every, waits, per_commit)
    finally:
        for conn in conns:
            await conn.close()


async def sample_waits(url: str, stop: asyncio.Event) -> Counter[str]:
    """Where the writers' backends are, every few milliseconds, until stop is set."""
    conn = await asyncpg.connect(url)
    seen: Counter[str] = Counter()
    try:
        query = await conn.prepare(
            "SELECT coalesce(wait_event_type || ':' || wait_event, 'running') FROM pg_stat_activity"
            " WHERE application_name = $1 AND backend_type = 'client backend'")
        while not stop.is_set():
            seen.update(row[0] for row in await query.fetch(APPLICATION))
            await asyncio.sleep(0.005)
    finally:
        await conn.close()
    return seen


def item_writes(statement: str, targets: list[Target], notify: bool = False) -> Write:
    """One transaction per write, as vaultapi.publish.write sends it; with notify, the statement
    that names the device also sends an event-sized pg_notify (the floor: publishing by hand)."""
    set_device = SET_DEVICE_AND_NOTIFY if notify else SET_DEVICE
    extra = (EVENT,) if notify else ()

    async def write(conn: asyncpg.Connection, index: int) -> None:
        target = targets[index]
        args = (target.user, ITEM) if statement == INSERT else (target.cipher, ITEM)
        async with conn.transaction():
            await conn.execute(set_device, DEVICE, *extra)
            await conn.execute(statement, *args)
    return write


def bare_writes(statement: str) -> Write:
    async def write(conn: asyncpg.Connection, index: int) -> None:
        await conn.execute(statement, f"writer-{index}")
    return write


def backend_cpu_micros(pid: int) -> float | None:
    """CPU time a backend has run, from /proc (None when the server runs elsewhere)."""
    try:
        with open(f"/proc/{pid}/schedstat") as stat:
            return int(stat.read().split()[0]) / 1000
    except OSError:
        return None


def backends_cpu_micros(pids: list[int]) -> float | None:
    times = [backend_cpu_micros(pid) for pid in pids]
    return None if None in times else sum(times)  # type: ignore[arg-type]


@dataclass
class Cost:
    """Per transaction: wall time at the client, and CPU time of the backend when measurable."""

    wall: float
    cpu: float | None


async def statement_cost(url: str, statement: str, targets: list[Target], count: int) -> Cost:
    """Single-item transactions, commit flush left out (synchronous_commit off)."""
    conn = await asyncpg.connect(url, server_settings={"synchronous_commit": "off"})
    write = item_writes(statement, targets)
    try:
        for _ in range(50):
            await write(conn, 0)
        pid = conn.get_server_pid()
        cpu, started = backend_cpu_micros(pid), time.perf_counter()
        for _ in range(count):
            await write(conn, 0)
        wall, cpu_after = (time.perf_counter() - started) * 1e6, backend_cpu_micros(pid)
        return Cost(wall / count, None if cpu is None or cpu_after is None else (cpu_after - cpu) / count)
    finally:
        await conn.close()


async def import_cost(url: str, user: uuid.UUID, rounds: int) -> Cost:
    """Median of rounds imports: wall ms and the backend's CPU ms."""
    conn = await asyncpg.connect(url)
    pid = conn.get_server_pid()
    walls: list[float] = []
    cpus: list[float] = []
    try:
        for round_ in range(rounds + 1):  # the first round warms up
            cpu, started = backend_cpu_micros(pid), time.perf_counter()
            async with conn.transaction():
                await conn.execute(SET_DEVICE, DEVICE)
                await conn.execute(SET_BULK)
                await conn.execute(IMPORT, user, IMPORTED)
            wall, cpu_after = time.perf_counter() - started, backend_cpu_micros(pid)
            if round_:
                walls.append(wall * 1000)
                if cpu is not None and cpu_after is not None:
                    cpus.append((cpu_after - cpu) / 1000)
            await conn.execute("DELETE FROM ciphers WHERE user_id = $1", user)
        return Cost(statistics.median(walls), statistics.median(cpus) if cpus else None)
    finally:
        await conn.close()


# ---- scratch databases ---------------------------------------------------------------------


@dataclass
class Scratch:
    """A scratch database migrated by one set of definitions."""

    label: str
    url: str
    targets: list[Target]
    importer: uuid.UUID


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def migrate_at(revision: str | None, url: str) -> None:
    """Migrate with this tree's migrations, or with those of a git revision (in a subprocess)."""
    if revision is None:
        migrate.upgrade(url)
        return
    with tempfile.TemporaryDirectory() as tree:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "db"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True)
        subprocess.run([sys.executable, "-c", "import sys; from db import migrate; migrate.upgrade(sys.argv[1])",
                        url], cwd=tree, env={**os.environ, "PYTHONPATH": tree}, check=True)


async def seed(url: str) -> tuple[list[Target], uuid.UUID]:
    """A user per writer with one item each, and a user to import into."""
    conn = await asyncpg.connect(url)
    try:
        # key material as wide as a real account's (an encrypted RSA private key is ~1.7 kB)
        users = [row["id"] for row in await conn.fetch(
            "INSERT INTO users (email, password_hash, key, private_key, public_key)"
            " SELECT 'bench' || n || '@example.com', repeat('h', 96), '2.' || repeat('k', 180),"
            "        '2.' || repeat('p', 1700), repeat('q', 392)"
            "   FROM generate_series(1, $1) n ORDER BY n RETURNING id", WRITERS + 1)]
        targets = []
        for user in users[:WRITERS]:
            targets.append(Target(user, await conn.fetchval(
                "INSERT INTO ciphers (user_id, type, data) VALUES ($1, 1, $2::jsonb) RETURNING id", user, ITEM)))
        await conn.execute("CREATE TABLE bench_writes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
                           " writer text NOT NULL)")
        return targets, users[WRITERS]
    finally:
        await conn.close()


@asynccontextmanager
async def scratch(server_url: str, label: str, revision: str | None) -> AsyncIterator[Scratch]:
    name = f"pgwarden_bench_{os.getpid()}_{label}"
    admin = await asyncpg.connect(server_url)
    await admin.execute(f"CREATE DATABASE {name}")
    try:
        url = with_database(server_url, name)
        await asyncio.to_thread(migrate_at, revision, url)
        targets, importer = await seed(url)
        yield Scratch(label, url, targets, importer)
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


async def set_triggers(url: str, enabled: bool) -> None:
    conn = await asyncpg.connect(url)
    try:
        for table in PUBLISHING_TABLES:
            await conn.execute(f"ALTER TABLE {table} {'ENABLE' if enabled else 'DISABLE'} TRIGGER USER")
    finally:
        await conn.close()


async def tidy(url: str, targets: list[Target]) -> None:
    """Back to one item per writer, vacuumed: every run starts from the same tables."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("DELETE FROM ciphers WHERE NOT id = ANY($1::uuid[])", [t.cipher for t in targets])
        await conn.execute("TRUNCATE bench_writes")
        await conn.execute("VACUUM")
    finally:
        await conn.close()


# ---- the comparison ------------------------------------------------------------------------


WORKLOADS = [("cipher INSERT", INSERT, 1), ("cipher INSERT", INSERT, 8),
             ("cipher UPDATE", UPDATE, 1), ("cipher UPDATE", UPDATE, 8)]


STATES = {
    "off": "triggers off",
    "on": "triggers on",
    "floor": "triggers off, one pg_notify",
}


async def compare(server_url: str, args: argparse.Namespace) -> None:
    sets = [("before", args.before), ("after", None)] if args.before else [("after", None)]
    async with scratch(server_url, "after", None) as after:
        async with (scratch(server_url, "before", args.before) if args.before else _nothing()) as before:
            databases = [db for db in (before, after) if db is not None]
            # results[label][workload][state]: one Load (or import Cost) per run
            results: dict[str, dict[str, dict[str, list]]] = {db.label: {} for db in databases}
            bare: dict[str, list[Load]] = {}
            for run in range(args.runs):
                for db in databases:
                    await tidy(db.url, db.targets)
                for name, statement, writers in WORKLOADS:
                    for db in databases:
                        # the floor needs no triggers: measured once, beside this tree's definitions
                        states = ["off", "on", "floor"] if db is after else ["off", "on"]
                        for state in states[run % len(states):] + states[:run % len(states)]:
                            await set_triggers(db.url, state == "on")
                            write = item_writes(statement, db.targets, notify=state == "floor")
                            load = await timed_writes(db.url, write, writers, args.seconds, sample=writers > 1)
                            results[db.label].setdefault(f"{name}, {writers} writer{'s' * (writers > 1)}",
                                                         {}).setdefault(state, []).append(load)
                        await tidy(db.url, db.targets)
                for db in databases:
                    for state in ("off", "on") if run % 2 == 0 else ("on", "off"):
                        await set_triggers(db.url, state == "on")
                        cost = await import_cost(db.url, db.importer, rounds=5)
                        results[db.label].setdefault(f"import of {IMPORT_ITEMS:,} items", {}).setdefault(
                            state, []).append(cost)
                for label, statement in BARE.items():
                    for writers in (1, 8, 16):
                        bare.setdefault(f"{label}, {writers}", []).append(
                            await timed_writes(after.url, bare_writes(statement), writers, args.seconds,
                                               sample=writers > 1))
                for db in databases:
                    await set_triggers(db.url, True)
                print(f"run {run + 1} of {args.runs} done", file=sys.stderr)

    print(f"\nWrite path: triggers on vs off in the same run; median of {args.runs} runs of "
          f"{args.seconds:g} s, ±half their range or [min-max]")
    for label, revision in sets:
        print(f"\n{label}: definitions of {revision or 'this tree'}")
        print_comparison(results[label])
    print("\nPostgreSQL's own cost of NOTIFY (no triggers)")
    print_bare(bare)


@asynccontextmanager
async def _nothing() -> AsyncIterator[None]:
    yield None


def median_spread(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def plus_minus(values: list[float], digits: int = 0) -> str:
    middle, low, high = median_spread(values)
    spread = (high - low) / 2 / middle * 100 if middle else 0.0
    return f"{middle:.{digits}f} ±{spread:.0f}%"


def ratio(values: list[float]) -> str:
    middle, low, high = median_spread(values)
    return f"{middle:.2f} [{low:.2f}-{high:.2f}]"


def print_comparison(results: dict[str, dict[str, list]]) -> None:
    print(f"{'':<32}{'rate/s':>12}{'vs off':>18}{'p50 ms':>13}{'p99 ms':>13}{'p99 vs off':>18}"
          f"{'CPU µs/commit':>16}")
    for workload, by_state in results.items():
        print(workload)
        off = by_state["off"]
        if workload.startswith("import"):
            for state, costs in by_state.items():
                walls = [cost.wall for cost in costs]
                line = f"  {STATES[state]:<30}{'':>12}{'':>18}{plus_minus(walls, 1):>13}   ms per import"
                if state != "off":
                    line += f", vs off {ratio([b.wall / a.wall for a, b in zip(off, costs)])}"
                    if all(cost.cpu is not None for cost in off + costs):
                        line += f"; backend CPU vs off {ratio([b.cpu / a.cpu for a, b in zip(off, costs)])}"
                print(line)
            continue
        for state, loads in by_state.items():
            versus = p99_versus = ""
            if state != "off":
                versus = ratio([b.rate / a.rate for a, b in zip(off, loads)])
                p99_versus = ratio([b.percentile(0.99) / a.percentile(0.99) for a, b in zip(off, loads)])
            cpu = plus_minus([l.cpu for l in loads]) if all(l.cpu is not None for l in loads) else ""
            print(f"  {STATES[state]:<30}{plus_minus([l.rate for l in loads]):>12}{versus:>18}"
                  f"{plus_minus([l.percentile(0.5) for l in loads], 2):>13}"
                  f"{plus_minus([l.percentile(0.99) for l in loads], 2):>13}{p99_versus:>18}{cpu:>16}")
        if "floor" in by_state:
            print(f"  {'triggers on vs the floor':<30}{'':>12}"
                  f"{ratio([b.rate / a.rate for a, b in zip(by_state['floor'], by_state['on'])]):>18}")
        if off[0].waits:
            for state, loads in by_state.items():
                print(f"    writers' backends, {STATES[state]}: {wait_shares(loads)}")


def wait_shares(loads: list[Load]) -> str:
    """The share of samples per wait event, largest first (3% and more)."""
    seen: Counter[str] = Counter()
    for load in loads:
        seen.update(load.waits)
    total = sum(seen.values()) or 1
    shown = [f"{WAIT_NAMES.get(event, event)} {count / total:.0%}" for event, count in seen.most_common()
             if count / total >= 0.03]
    return ", ".join(shown)


WAIT_NAMES = {
    "Lock:object": "notify lock",
    "IO:WALSync": "WAL flush",
    "LWLock:WALWrite": "waiting for a WAL flush",
    "Client:ClientRead": "waiting for the client",
    "running": "running",
}


def print_bare(bare: dict[str, list[Load]]) -> None:
    print(f"{'commit':<34}{'writers':>8}{'rate/s':>14}{'p50 ms':>14}{'p99 ms':>14}")
    for key, loads in bare.items():
        label, writers = key.rsplit(", ", 1)
        print(f"{label:<34}{writers:>8}{plus_minus([l.rate for l in loads]):>14}"
              f"{plus_minus([l.percentile(0.5) for l in loads], 2):>14}"
              f"{plus_minus([l.percentile(0.99) for l in loads], 2):>14}")
        if loads[0].waits:
            print(f"{'':<42}backends: {wait_shares(loads)}")


# ---- the breakdown -------------------------------------------------------------------------


def variants() -> dict[str, str | None]:
    """Timing variants of this tree's definitions: pgwarden_publish as db/sql has it, with steps
    left out (None: a variant made by switching triggers, not by a definition)."""
    publish = _found(r"CREATE OR REPLACE FUNCTION pgwarden_publish\(.*?\n\$\$;\n", routines.events_sql())
    move = _found(r"\n *UPDATE user_revisions .*?\n        END IF;\n", publish)
    notify = _found(r"\n    IF single THEN\n.*?END IF;\n", publish)
    probing = _found(r"\n *UPDATE user_revisions r\n.*?;\n", move)
    return {
        "triggers off": None,
        "item revision stamps only": None,
        "trigger call, publish empty": publish.replace(move, "\n").replace(notify, "\n"),
        "+ pg_notify": publish.replace(move, "\n"),
        "+ revision move (no pg_notify)": publish.replace(notify, "\n"),
        "all: revision move + pg_notify": publish,
        "all, membership probe every time": publish.replace(move, probing),
    }


def _found(pattern: str, text: str) -> str:
    match = re.search(pattern, text, re.S)
    if match is None:
        raise SystemExit(f"db/sql/events.sql changed: {pattern!r} no longer matches; update bench/write_path.py")
    return match.group(0)


async def function_times(url: str, statement: str, targets: list[Target], count: int) -> tuple[float, dict]:
    """Per statement: the transaction's wall time, and each trigger function's total and self time."""
    conn = await asyncpg.connect(url, server_settings={"track_functions": "all", "synchronous_commit": "off"})
    write = item_writes(statement, targets)
    snapshot = ("SELECT funcname, calls, total_time, self_time FROM pg_stat_user_functions"
                " WHERE funcname LIKE 'pgwarden%'")
    try:
        for _ in range(50):
            await write(conn, 0)
        await conn.execute("SELECT pg_stat_force_next_flush()")
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        before = {r["funcname"]: r for r in await conn.fetch(snapshot)}
        started = time.perf_counter()
        for _ in range(count):
            await write(conn, 0)
        wall = (time.perf_counter() - started) / count * 1e6
        await conn.execute("SELECT pg_stat_force_next_flush()")
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        after = {r["funcname"]: r for r in await conn.fetch(snapshot)}
    finally:
        await conn.close()
    times = {}
    for name, row in after.items():
        was = before.get(name)
        calls = row["calls"] - (was["calls"] if was else 0)
        if calls >= count:
            total = (row["total_time"] - (was["total_time"] if was else 0)) * 1000 / count
            own = (row["self_time"] - (was["self_time"] if was else 0)) * 1000 / count
            times[name] = (calls / count, total, own)
    return wall, times


def cost_cells(costs: list[Cost], digits: int = 0) -> str:
    wall = plus_minus([c.wall for c in costs], digits)
    if any(c.cpu is None for c in costs):
        return f"{wall:>14}{'':>14}"
    return f"{wall:>14}{plus_minus([c.cpu for c in costs], digits):>14}"  # type: ignore[misc]


async def bulk_edit_after_single_edits(url: str, target: Target, items: int) -> float:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("INSERT INTO ciphers (user_id, type, data) SELECT $1, 1, '{}' FROM generate_series(1, $2)",
                           target.user, items)
        for _ in range(10):
            await conn.execute(UPDATE, target.cipher, ITEM)
        started = time.perf_counter()
        await conn.execute("UPDATE ciphers SET reprompt = 1 - reprompt WHERE user_id = $1", target.user)
        return time.perf_counter() - started
    finally:
        await conn.execute("DELETE FROM ciphers WHERE user_id = $1 AND id <> $2", target.user, target.cipher)
        await conn.close()


async def apply_variant(url: str, name: str, sql: str | None) -> None:
    conn = await asyncpg.connect(url)
    try:
        if sql:
            await conn.execute(sql)
        for table in PUBLISHING_TABLES:
            await conn.execute(f"ALTER TABLE {table} {'DISABLE' if name == 'triggers off' else 'ENABLE'} TRIGGER USER")
        if name == "item revision stamps only":
            await conn.execute("ALTER TABLE ciphers DISABLE TRIGGER USER")
            for (trigger,) in await conn.fetch("SELECT tgname FROM pg_trigger WHERE tgrelid = 'ciphers'::regclass"
                                               " AND tgname LIKE 'ciphers\\_stamp\\_%'"):
                await conn.execute(f"ALTER TABLE ciphers ENABLE TRIGGER {trigger}")
    finally:
        await conn.close()


async def breakdown(server_url: str, args: argparse.Namespace) -> None:
    count = args.count
    async with scratch(server_url, "after", None) as after:
        async with (scratch(server_url, "before", args.before) if args.before else _nothing()) as before:
            databases = [db for db in (before, after) if db is not None]
            print(f"\nTrigger functions per single-item statement (track_functions = 'all', synchronous_commit"
                  f" off, 1 writer, {count} statements; median of {args.runs} runs; µs)")
            for db in databases:
                for name, statement in (("INSERT", INSERT), ("UPDATE", UPDATE)):
                    await tidy(db.url, db.targets)
                    runs = [await function_times(db.url, statement, db.targets, count) for _ in range(args.runs)]
                    print(f"\n{db.label} ({args.before if db.label == 'before' else 'this tree'}), cipher {name}:"
                          f" transaction {plus_minus([r[0] for r in runs])} µs at the client")
                    print(f"    {'function':<36}{'calls':>7}{'total µs':>14}{'self µs':>14}")
                    for function in sorted(runs[0][1], key=lambda f: -runs[0][1][f][1]):
                        calls = runs[0][1][function][0]
                        total = [r[1][function][1] for r in runs if function in r[1]]
                        own = [r[1][function][2] for r in runs if function in r[1]]
                        print(f"    {function:<36}{calls:>7.0f}{plus_minus(total, 1):>14}{plus_minus(own, 1):>14}")

            print(f"\nTiming variants of this tree's definitions: µs per single-item transaction, wall at the"
                  f" client and CPU of the backend (synchronous_commit off, 1 writer, {count} transactions;"
                  f" median of {args.runs} runs, variants interleaved)")
            timing_variants = variants()
            shipped = timing_variants["all: revision move + pg_notify"]
            costs: dict[str, dict[str, list[Cost]]] = {name: {} for name in timing_variants}
            for _ in range(args.runs):
                for name, sql in timing_variants.items():
                    await apply_variant(after.url, name, sql)
                    for label, statement in (("INSERT", INSERT), ("UPDATE", UPDATE)):
                        costs[name].setdefault(label, []).append(
                            await statement_cost(after.url, statement, after.targets, count))
                    await tidy(after.url, after.targets)
            await apply_variant(after.url, "restore", shipped)
            print(f"    {'variant':<36}{'INSERT wall':>14}{'cpu':>14}{'UPDATE wall':>14}{'cpu':>14}")
            for name, by_label in costs.items():
                print(f"    {name:<36}{cost_cells(by_label['INSERT'])}{cost_cells(by_label['UPDATE'])}")

            print(f"\nImport of {IMPORT_ITEMS:,} items: ms, wall at the client and CPU of the backend (median of"
                  f" 5 imports per run, {args.runs} runs)")
            print(f"    {'variant':<36}{'wall':>14}{'cpu':>14}")
            imports: dict[str, list[Cost]] = {}
            for _ in range(args.runs):
                for name in ("triggers off", "item revision stamps only", "all: revision move + pg_notify"):
                    await apply_variant(after.url, name, timing_variants[name])
                    imports.setdefault(name, []).append(await import_cost(after.url, after.importer, 5))
            for name, runs in imports.items():
                print(f"    {name:<36}{cost_cells(runs, 1)}")
            await apply_variant(after.url, "restore", shipped)

            print(f"\nBulk edit of {BULK_EDIT:,} items after 10 single edits on the same connection (s)")
            for db in databases:
                await tidy(db.url, db.targets)
                await set_triggers(db.url, True)
                seconds = await bulk_edit_after_single_edits(db.url, db.targets[0], BULK_EDIT)
                print(f"    {db.label:<36}{seconds:>14.2f}")


# ---- main ----------------------------------------------------------------------------------


@contextmanager
def server(database_url: str | None) -> Iterator[str]:
    with tempfile.TemporaryDirectory() as folder:
        url, embedded = resolve_database_url(database_url, folder)
        try:
            yield url
        finally:
            if embedded:
                embedded.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0, help="per timed stretch of writes")
    parser.add_argument("--before", metavar="REV", help="also measure the definitions of this git revision")
    parser.add_argument("--breakdown", action="store_true", help="where a single-item statement's time goes")
    parser.add_argument("--count", type=int, default=3000, help="statements per breakdown figure")
    args = parser.parse_args()
    with server(os.environ.get("DATABASE_URL")) as url:
        asyncio.run(breakdown(url, args) if args.breakdown else compare(url, args))


if __name__ == "__main__":
    main()
