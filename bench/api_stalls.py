"""How long a big import, a big sync and huge request bodies keep the API's other requests waiting.

Starts the API (`pgwarden api`, on 127.0.0.1 only) on a scratch database, and a prober process
that asks GET /alive over and over on one keep-alive connection, noting how long each answer
took. Then, one after the other:

- quiet: nothing else, the baseline of this run;
- import: one POST /api/ciphers/import of --items items with 9000-character notes (about
  25 MB for 2500 items);
- sync: GET /api/sync of that vault, --repeat times;
- item list: GET /api/ciphers of that vault, --repeat times;
- huge bodies: whole 16 MiB forms to the token endpoint and 28 MiB of JSON to prelogin, both
  at once, --repeat times each (refused from their Content-Length, never parsed).

Prints, per phase, the /alive latency p50, p99 and max, each also as a ratio to the quiet phase,
and how long the work itself took; for scale, how long the same JSON work takes in one call in
this process (what a request would wait for if the API did it in one step). Asserts nothing.

    python bench/api_stalls.py [--items 2500] [--repeat 3] [--quiet-seconds 2]

Uses DATABASE_URL (a scratch database is created and dropped) or an embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scratch import free_port, percentile, scratch_database, until_alive  # noqa: E402
from core.keystore import load_signing_key  # noqa: E402
from core.tokens import TokenIssuer  # noqa: E402

DOMAIN = "https://bench.invalid"
MiB = 1024 * 1024
#: the import route's limit is 32 MiB; the bench stays under it
MAX_IMPORT = 30 * MiB
#: a well-formed EncString, and notes of 9000 characters (the limit is 10000)
ENC = "2.QUFBQUFBQUFBQUFBQUFBQQ==|QUFB|QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE="
NOTES = "2.QUFB|" + "Q" * 8988 + "|QUFB"


# -- the prober, in its own process so that the load's client work does not delay it ------------

async def _probe(port: int, stop: Any, results: Any) -> None:
    samples: list[tuple[float, float]] = []
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = b"GET /alive HTTP/1.1\r\nHost: bench\r\n\r\n"
    while not stop.is_set():
        wall, started = time.time(), time.perf_counter()
        writer.write(request)
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await reader.readexactly(length)
        samples.append((wall, time.perf_counter() - started))
        # a short pause: the prober measures the API's loop, it must not be its main load
        await asyncio.sleep(0.001)
    writer.close()
    results.put(samples)


def probe(port: int, stop: Any, results: Any) -> None:
    asyncio.run(_probe(port, stop, results))


# -- the load ---------------------------------------------------------------------------------

def import_body(items: int) -> bytes:
    item = {"type": 1, "name": ENC, "notes": NOTES,
            "login": {"username": ENC, "password": ENC, "uris": [{"uri": ENC, "match": None}]}}
    folders = max(1, items // 50)
    return json.dumps({"ciphers": [item] * items, "folders": [{"name": ENC}] * folders,
                       "folderRelationships": [{"key": n, "value": n % folders} for n in range(items)]}).encode()


async def access_token(url: str) -> str:
    """A user made in SQL, and an access token signed with the API's own key."""
    conn = await asyncpg.connect(url)
    try:
        user = await conn.fetchrow(
            "INSERT INTO users (email, password_hash, key) VALUES ('stalls@bench', 'h', $1)"
            " RETURNING id::text, security_stamp::text", ENC)
        issuer = TokenIssuer(await load_signing_key(conn, None), f"{DOMAIN}|login", 3600)
        return issuer.issue({"sub": user["id"], "sstamp": user["security_stamp"], "device": str(uuid.uuid4())})
    finally:
        await conn.close()


async def send_whole(port: int, path: str, content_type: str, body: bytes) -> None:
    """A whole body, sent whatever the server answers early, as an attacker would."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    try:
        writer.write(head.encode() + body)
        await writer.drain()
        await reader.read(1024)
    except ConnectionError:
        pass
    finally:
        writer.close()


def best_of_three(work: Callable[[], Any]) -> float:
    runs = []
    for _ in range(3):
        started = time.perf_counter()
        work()
        runs.append(time.perf_counter() - started)
    return min(runs)


# -- the run ------------------------------------------------------------------------------------

async def run(url: str, items: int, repeat: int, quiet_seconds: float) -> None:
    body = import_body(items)
    if len(body) > MAX_IMPORT:
        raise SystemExit(f"{items} items make an import of {len(body) / MiB:.1f} MiB, over the route's limit")
    port = free_port()
    env = {**os.environ, "DATABASE_URL": url, "API_ADDRESS": "127.0.0.1", "API_PORT": str(port),
           "DOMAIN": DOMAIN, "LOG_LEVEL": "warning", "MAX_ITEMS_PER_USER": str(max(items, 1))}
    api = subprocess.Popen([sys.executable, "-m", "pgwarden.cli", "api"], env=env)
    ctx = mp.get_context("spawn")
    stop, results = ctx.Event(), ctx.Queue()
    prober = ctx.Process(target=probe, args=(port, stop, results))
    phases: list[tuple[str, float, float, float]] = []  # name, start, end (wall), work seconds
    try:
        await until_alive(port, "API")
        auth = {"Authorization": f"Bearer {await access_token(url)}"}
        prober.start()
        await asyncio.sleep(0.5)  # the prober's process starts and connects

        async def phase(name: str, work: Callable[[], Awaitable[None]]) -> None:
            wall, started = time.time(), time.perf_counter()
            await work()
            phases.append((name, wall, time.time(), time.perf_counter() - started))
            await asyncio.sleep(0.2)  # the last stall's probe comes back before the next phase

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=None) as client:
            async def importing() -> None:
                reply = await client.post("/api/ciphers/import", content=body,
                                          headers={**auth, "Content-Type": "application/json"})
                reply.raise_for_status()

            def reading(path: str) -> Callable[[], Awaitable[None]]:
                async def read() -> None:
                    for _ in range(repeat):
                        async with client.stream("GET", path, headers=auth) as reply:
                            reply.raise_for_status()
                            async for _piece in reply.aiter_raw():
                                pass
                return read

            async def huge_bodies() -> None:
                form = b"a=b&" * (4 * MiB)
                prelogin = b'{"email": "' + b"x" * (28 * MiB) + b'"}'
                for _ in range(repeat):
                    await asyncio.gather(
                        send_whole(port, "/identity/connect/token", "application/x-www-form-urlencoded", form),
                        send_whole(port, "/identity/accounts/prelogin/password", "application/json", prelogin))

            await phase("quiet", lambda: asyncio.sleep(quiet_seconds))
            await phase(f"import of {items} items ({len(body) / MiB:.1f} MiB)", importing)
            await phase(f"sync of that vault x{repeat}", reading("/api/sync"))
            await phase(f"item list of that vault x{repeat}", reading("/api/ciphers"))
            await phase(f"16 MiB form + 28 MiB prelogin x{repeat}", huge_bodies)
            async with client.stream("GET", "/api/sync", headers=auth) as reply:
                sync = await reply.aread()
        stop.set()
        samples = results.get(timeout=60)
    finally:
        stop.set()
        if prober.pid is not None:
            prober.join(30)
        api.terminate()
        api.wait(30)

    # for scale: the JSON work of each big request, done in one call here
    parsed_import, parsed_sync = json.loads(body), json.loads(sync)
    in_one_call = {
        "import": best_of_three(lambda: json.loads(body)) + best_of_three(lambda: json.dumps(parsed_import["ciphers"])),
        "sync": best_of_three(lambda: json.loads(sync)) + best_of_three(lambda: json.dumps(parsed_sync)),
    }
    report(phases, samples, in_one_call)


def report(phases: list[tuple[str, float, float, float]], samples: list[tuple[float, float]],
           in_one_call: dict[str, float]) -> None:
    def figures(start: float, end: float) -> tuple[int, float, float, float]:
        inside = [latency * 1000 for wall, latency in samples if start <= wall <= end]
        if not inside:
            return 0, float("nan"), float("nan"), float("nan")
        return len(inside), percentile(inside, 0.5), percentile(inside, 0.99), max(inside)

    quiet = figures(*phases[0][1:3])
    print("\n/alive latency while the API works, against the quiet phase of this run\n")
    print(f"| {'phase':<40} | {'probes':>6} | {'p50 ms':>7} | {'p99 ms':>7} | {'max ms':>8} "
          f"| {'p50 x':>6} | {'p99 x':>6} | {'max x':>7} | {'work s':>7} |")
    print(f"|{'-' * 42}|{'-' * 8}|{'-' * 9}|{'-' * 9}|{'-' * 10}|{'-' * 8}|{'-' * 8}|{'-' * 9}|{'-' * 9}|")
    for name, start, end, seconds in phases:
        count, p50, p99, longest = figures(start, end)
        print(f"| {name:<40} | {count:>6} | {p50:>7.2f} | {p99:>7.2f} | {longest:>8.2f} "
              f"| {p50 / quiet[1]:>6.1f} | {p99 / quiet[2]:>6.1f} | {longest / quiet[3]:>7.1f} | {seconds:>7.2f} |")
    print("\nfor scale, the same JSON work in one call in this process (decode and encode):")
    for name, seconds in in_one_call.items():
        print(f"  {name:<8} {seconds * 1000:8.1f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=2500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quiet-seconds", type=float, default=2.0)
    args = parser.parse_args()
    with scratch_database(migrated=False) as url:
        # the API migrates and makes its keys itself, as in production
        asyncio.run(run(url, args.items, args.repeat, args.quiet_seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
