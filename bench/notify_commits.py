"""What publishing costs a writer: commit throughput of vault writes with and without triggers.

Every notifying commit takes PostgreSQL's cluster-wide notify lock, so notifying commits
serialize. This measures single-item updates (the human-paced case) and a 1,000-item import,
each with the triggers on and, as the baseline in the same run on the same database, with
them disabled. Prints a table; asserts nothing.

    python bench/notify_commits.py [--seconds 5] [--writers 1,4,16]

Uses DATABASE_URL (a scratch database is created and dropped) or an embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from db import migrate  # noqa: E402
from db.embedded import resolve_database_url  # noqa: E402

SCRATCH = f"pgwarden_bench_{os.getpid()}"


def scratch_url(server_url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    return urlunsplit(urlsplit(server_url)._replace(path="/" + SCRATCH))


async def seed(url: str, users: int) -> list[tuple[uuid.UUID, uuid.UUID]]:
    conn = await asyncpg.connect(url)
    try:
        pairs = []
        for n in range(users):
            user = await conn.fetchval(
                "INSERT INTO users (email, password_hash, key) VALUES ($1, 'h', 'k') RETURNING id", f"u{n}@bench"
            )
            cipher = await conn.fetchval(
                "INSERT INTO ciphers (user_id, type, data) VALUES ($1, 1, '{}') RETURNING id", user
            )
            pairs.append((user, cipher))
        return pairs
    finally:
        await conn.close()


async def set_triggers(url: str, enabled: bool) -> None:
    conn = await asyncpg.connect(url)
    try:
        action = "ENABLE" if enabled else "DISABLE"
        for table in ("ciphers", "folders", "sync_events"):
            await conn.execute(f"ALTER TABLE {table} {action} TRIGGER USER")
    finally:
        await conn.close()


async def single_item_updates(url: str, pairs: list, writers: int, seconds: float) -> float:
    """Commits per second: each writer edits its own user's item in its own transaction."""
    deadline = time.perf_counter() + seconds
    counts = [0] * writers

    async def writer(index: int) -> None:
        conn = await asyncpg.connect(url)
        _, cipher = pairs[index]
        try:
            while time.perf_counter() < deadline:
                async with conn.transaction():
                    await conn.execute("SELECT set_config('pgwarden.device_identifier', 'bench-device', true)")
                    await conn.execute("UPDATE ciphers SET reprompt = 1 - reprompt WHERE id = $1", cipher)
                counts[index] += 1
        finally:
            await conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(writer(i) for i in range(writers)))
    return sum(counts) / (time.perf_counter() - started)


async def import_seconds(url: str, user: uuid.UUID, items: int, rounds: int) -> float:
    conn = await asyncpg.connect(url)
    try:
        best = float("inf")
        for _ in range(rounds):
            started = time.perf_counter()
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO ciphers (user_id, type, data) SELECT $1, 1, jsonb_build_object('n', n)"
                    " FROM generate_series(1, $2) n",
                    user, items,
                )
            best = min(best, time.perf_counter() - started)
            await conn.execute("DELETE FROM ciphers WHERE user_id = $1 AND data ? 'n'", user)
        return best
    finally:
        await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--writers", default="1,4,16")
    args = parser.parse_args()
    writer_counts = [int(w) for w in args.writers.split(",")]

    with tempfile.TemporaryDirectory() as folder:
        server_url, embedded = resolve_database_url(os.environ.get("DATABASE_URL"), folder)
        admin = await asyncpg.connect(server_url)
        await admin.execute(f"CREATE DATABASE {SCRATCH}")
        try:
            url = scratch_url(server_url)
            migrate.upgrade(url)
            pairs = await seed(url, max(writer_counts) + 1)
            import_user = pairs[-1][0]

            print(f"{'workload':<34}{'triggers off':>14}{'triggers on':>14}{'on / off':>10}")
            for writers in writer_counts:
                results = {}
                for enabled in (False, True):
                    await set_triggers(url, enabled)
                    results[enabled] = await single_item_updates(url, pairs, writers, args.seconds)
                print(
                    f"{f'item edits, {writers} writer(s), commits/s':<34}"
                    f"{results[False]:>14.0f}{results[True]:>14.0f}{results[True] / results[False]:>10.2f}"
                )
            results = {}
            for enabled in (False, True):
                await set_triggers(url, enabled)
                results[enabled] = await import_seconds(url, import_user, 1000, rounds=5)
            print(
                f"{'import of 1,000 items, ms':<34}"
                f"{results[False] * 1000:>14.1f}{results[True] * 1000:>14.1f}{results[True] / results[False]:>10.2f}"
            )
        finally:
            await admin.execute(f"DROP DATABASE IF EXISTS {SCRATCH} WITH (FORCE)")
            await admin.close()
            if embedded:
                embedded.stop()


if __name__ == "__main__":
    asyncio.run(main())
