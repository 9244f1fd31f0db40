"""The API's hot paths under load: ``GET /api/sync`` of a 1,000-item vault, and ``POST /api/ciphers``.

One API process (``pgwarden api``) per tree under test: this one and, with ``--old-api CHECKOUT``,
the API of another checkout (the route's cost before a change), on the same database in the same
run, one after the other. Each gets its own user, whose vault is filled by one import of
``--items`` items. Then, for ``--seconds`` each, ``--clients`` keep-alive connections spread over
client processes send requests back to back: syncs of that vault, then new items. Clients speak
raw HTTP/1.1 (the cost of a client library would compete with the server for the same cores).

Prints per API and route, median and spread of ``--runs`` runs: requests/s, p50 and p99 latency,
API CPU milliseconds per request, and the ratios of this tree to the old one. Asserts nothing.

    python bench/api_hot_paths.py [--items 1000] [--clients 8] [--seconds 5] [--runs 3] [--old-api CHECKOUT]
    python bench/api_hot_paths.py --profile api.prof   # this API alone, under cProfile

Uses DATABASE_URL (a scratch database is created and dropped) or an embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scratch import (  # noqa: E402
    free_port, percentile, print_row, print_table_head,
    run_on_scratch_database, spread, until_alive)
from core.keystore import load_signing_key  # noqa: E402
from core.tokens import TokenIssuer  # noqa: E402

DOMAIN = "https://bench.invalid"
CLIENT_PROCESSES = 2
ENC = "2.AAAAAAAAAAAAAAAAAAAAAA==|AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=|AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
ITEM = {"type": 1, "name": ENC, "notes": ENC,
        "login": {"username": ENC, "password": ENC, "uris": [{"uri": ENC, "match": None}]}}


# -- clients -------------------------------------------------------------------------------------


async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes, body: bytes) -> int:
    """One request on a keep-alive connection; returns the status once the whole reply is read."""
    writer.write(head + body)
    status_line = await reader.readline()
    status = int(status_line.split()[1])
    length, chunked = 0, False
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        if name.lower() == "content-length":
            length = int(value)
        elif name.lower() == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    if chunked:
        while size := int((await reader.readline()).split(b";")[0], 16):
            await reader.readexactly(size + 2)
        await reader.readline()
    else:
        await reader.readexactly(length)
    return status


async def _client(port: int, head: bytes, body: bytes, until: float, latencies: list[float]) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    failures = 0
    try:
        while time.time() < until:
            started = time.perf_counter()
            if await _request(reader, writer, head, body) >= 400:
                failures += 1
            latencies.append((time.perf_counter() - started) * 1000)
    finally:
        writer.close()
    return failures


def client_process(port: int, head: bytes, body: bytes, connections: int, start: float, seconds: float,
                   results: Any) -> None:
    async def main() -> None:
        await asyncio.sleep(max(0.0, start - time.time()))
        latencies: list[float] = []
        failures = await asyncio.gather(*(_client(port, head, body, start + seconds, latencies)
                                          for _ in range(connections)))
        results.put((latencies, sum(failures)))

    asyncio.run(main())


# -- one API -----------------------------------------------------------------------------------


async def _user_token(url: str, name: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        user = await conn.fetchrow(
            "INSERT INTO users (email, password_hash, key) VALUES ($1, 'h', $2) RETURNING id::text, security_stamp::text",
            f"{name}-{uuid.uuid4()}@bench", ENC)
        issuer = TokenIssuer(await load_signing_key(conn, None), f"{DOMAIN}|login", 3600)
        return issuer.issue({"sub": user["id"], "sstamp": user["security_stamp"], "device": str(uuid.uuid4())})
    finally:
        await conn.close()


def _cpu(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


async def _load(pid: int, port: int, head: bytes, body: bytes, clients: int, seconds: float) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    start = time.time() + 1.5  # the client processes start and connect
    per_process = [clients // CLIENT_PROCESSES + (i < clients % CLIENT_PROCESSES) for i in range(CLIENT_PROCESSES)]
    processes = [ctx.Process(target=client_process, args=(port, head, body, n, start, seconds, results))
                 for n in per_process if n]
    for process in processes:
        process.start()
    await asyncio.sleep(max(0.0, start - time.time()))
    cpu_before = _cpu(pid)
    collected = [await asyncio.to_thread(results.get, True, seconds + 60) for _ in processes]
    cpu = _cpu(pid) - cpu_before
    for process in processes:
        process.join(10)
    latencies = [latency for part, _ in collected for latency in part]
    failures = sum(failed for _, failed in collected)
    return {"rps": len(latencies) / seconds, "p50": percentile(latencies, 0.5), "p99": percentile(latencies, 0.99),
            "cpu_ms": cpu * 1000 / max(1, len(latencies)), "failed": failures}


async def run_api(name: str, url: str, args: argparse.Namespace, checkout: str | None) -> dict[str, dict[str, float]]:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": url, "API_ADDRESS": "127.0.0.1", "API_PORT": str(port), "DOMAIN": DOMAIN,
           "LOG_LEVEL": "warning", "MAX_ITEMS_PER_USER": str(10 * args.items + 100000)}
    if checkout:
        env["PYTHONPATH"] = checkout
    command = [sys.executable, *(["-m", "cProfile", "-o", args.profile] if args.profile else []),
               "-m", "pgwarden.cli", "api"]
    api = subprocess.Popen(command, env=env, cwd=checkout)
    figures: dict[str, dict[str, float]] = {}
    try:
        await until_alive(port, "API")
        token = await _user_token(url, name)
        auth = f"Authorization: Bearer {token}\r\nHost: bench\r\n"
        imported = json.dumps({"ciphers": [ITEM] * args.items, "folders": [],
                               "folderRelationships": []}).encode()
        head = (f"POST /api/ciphers/import HTTP/1.1\r\n{auth}Content-Type: application/json\r\n"
                f"Content-Length: {len(imported)}\r\n\r\n").encode()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        status = await _request(reader, writer, head, imported)
        writer.close()
        if status >= 300:
            raise RuntimeError(f"{name}: the import answered {status}")
        sync_head = f"GET /api/sync HTTP/1.1\r\n{auth}\r\n".encode()
        figures["GET /api/sync"] = await _load(api.pid, port, sync_head, b"", args.clients, args.seconds)
        item = json.dumps(ITEM).encode()
        post_head = (f"POST /api/ciphers HTTP/1.1\r\n{auth}Content-Type: application/json\r\n"
                     f"Content-Length: {len(item)}\r\n\r\n").encode()
        figures["POST /api/ciphers"] = await _load(api.pid, port, post_head, item, args.clients, args.seconds)
    finally:
        api.send_signal(signal.SIGINT)
        try:
            api.wait(30)
        except subprocess.TimeoutExpired:
            api.kill()
    return figures


async def bench(url: str, args: argparse.Namespace) -> None:
    if args.profile:
        await run_api("this", url, args, None)
        print(f"profile written to {args.profile}")
        return
    apis = [("this", None)] + ([("old", args.old_api)] if args.old_api else [])
    runs: dict[str, list[dict[str, dict[str, float]]]] = {name: [] for name, _ in apis}
    for number in range(args.runs):
        for name, checkout in apis:
            figures = await run_api(name, url, args, checkout)
            runs[name].append(figures)
            print(f"run {number + 1} {name}: " + "; ".join(
                f"{route} {f['rps']:.0f}/s p50 {f['p50']:.1f} p99 {f['p99']:.1f} ms CPU {f['cpu_ms']:.2f} ms"
                + (f" ({f['failed']:.0f} failed)" if f["failed"] else "") for route, f in figures.items()), flush=True)

    print(f"\nAPI hot paths: one API process, {args.clients} keep-alive connections in {CLIENT_PROCESSES} client "
          f"processes, {args.seconds:g} s per route, a vault of {args.items} items; median [min-max] of {args.runs} runs\n")
    columns = [("route", 18), ("API", 5), ("requests/s", 20), ("p50 ms", 20), ("p99 ms", 20), ("CPU ms/request", 20),
               ("requests/s vs old", 18), ("CPU vs old", 18)]
    print_table_head(columns)
    for route in ("GET /api/sync", "POST /api/ciphers"):
        for name, _ in apis:
            values = [figures[route] for figures in runs[name]]
            cells = [route, name] + [spread([v[key] for v in values], ",.1f") for key in ("rps", "p50", "p99", "cpu_ms")]
            if name == "this" and args.old_api:
                old = [figures[route] for figures in runs["old"]]
                cells += [spread([v["rps"] / o["rps"] for v, o in zip(values, old, strict=True)], ".2f"),
                          spread([v["cpu_ms"] / o["cpu_ms"] for v, o in zip(values, old, strict=True)], ".2f")]
            else:
                cells += ["-", "-"]
            print_row(cells, columns)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--old-api", metavar="CHECKOUT", help="also run the API of this checkout (before a change)")
    parser.add_argument("--profile", metavar="FILE", help="run this API alone under cProfile, write its stats here")
    return run_on_scratch_database(bench, parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
