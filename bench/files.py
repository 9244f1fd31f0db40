"""What a large file costs: a 100 MiB attachment up and down through the API, with each file
store, against copying the same bytes into PostgreSQL directly, in the same run.

For each store (postgresql; s3, on moto's S3-compatible server run here) a `pgwarden api`
process serves one user; the bench announces a SIZE-byte attachment, uploads it as the clients
do (multipart/form-data, streamed), then fetches its signed download URL and reads the file to
the end (after a 1 MiB warm-up of the same, unmeasured). It prints MB/s of each, and the API process's peak RSS growth over its RSS before the
transfer (sampled every 20 ms). The baseline, on the same database: the same bytes written by
one asyncpg connection into a table shaped like stored_file_chunks (logged, as it is), one
CHUNK per INSERT (each its own commit), and read back one SELECT per chunk; the ratios are API/baseline. For s3, the same bytes put into and
read from the S3 server by the store itself, in this process (no API), show what the server
itself allows. Figures are the median [min-max] of --runs, each ratio taken within its run.

    python bench/files.py [--runs 3] [--size-mib 100]

Uses DATABASE_URL (a scratch database is created and dropped) or an embedded PostgreSQL.
Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scratch import free_port, scratch_database, spread, until_alive  # noqa: E402
from tests.support.bwclient import BitwardenClient  # noqa: E402
from core.config import Config, Secret  # noqa: E402
from vaultapi.storage import CHUNK  # noqa: E402
from vaultapi.storage.s3 import S3Store  # noqa: E402

MiB = 1024 * 1024
PASSWORD = "bench bench bench bench"
MOTO_SERVER = Path(sys.executable).parent / "moto_server"
BOUNDARY = "pgwardenbenchboundary"


@dataclass
class Transfer:
    up: float  # MB/s
    down: float
    up_rss: float  # peak RSS growth, MiB
    down_rss: float


async def sample_rss(process: psutil.Process, into: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        into.append(process.memory_info().rss)
        await asyncio.sleep(0.02)


async def measured(process: psutil.Process, work) -> tuple[float, float]:
    """Seconds the coroutine took, and the process's peak RSS growth during it (MiB)."""
    before = process.memory_info().rss
    samples: list[int] = []
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_rss(process, samples, stop))
    started = time.perf_counter()
    await work
    elapsed = time.perf_counter() - started
    stop.set()
    await sampler
    return elapsed, (max(samples + [before]) - before) / MiB


async def body(block: bytes, size: int) -> AsyncIterator[bytes]:
    yield (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"data\"; filename=\"2.bench\"\r\n"
           "Content-Type: application/octet-stream\r\n\r\n").encode()
    sent = 0
    while sent < size:
        piece = block[: min(len(block), size - sent)]
        sent += len(piece)
        yield piece
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def body_length(size: int) -> int:
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"data\"; filename=\"2.bench\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n")
    return len(head) + size + len(f"\r\n--{BOUNDARY}--\r\n")


async def through_api(api_url: str, process: psutil.Process, block: bytes, size: int) -> Transfer:
    """One SIZE-byte attachment up and down, measured, after a 1 MiB one that is not: what a fresh
    process sets up once (the S3 client's service model, connection pools) is not the transfer's."""
    client = BitwardenClient(api_url)
    try:
        await client.register(f"files-{uuid.uuid4().hex[:8]}@bench.invalid", PASSWORD)
        await client.login()
        await transfer(client, api_url, process, block, MiB)
        return await transfer(client, api_url, process, block, size)
    finally:
        await client.aclose()


async def transfer(client: BitwardenClient, api_url: str, process: psutil.Process, block: bytes,
                   size: int) -> Transfer:
    item = (await client.post("/api/ciphers", client.login_item("Bench"))).json()
    announced = await client.post(f"/api/ciphers/{item['id']}/attachment/v2", {
        "key": client.encrypt("k"), "fileName": client.encrypt("f"), "fileSize": size, "adminRequest": False})
    announced.raise_for_status()
    attachment_id = announced.json()["attachmentId"]

    async def upload() -> None:
        reply = await client.http.post(
            f"/api/ciphers/{item['id']}/attachment/{attachment_id}", content=body(block, size),
            headers={**client.auth_headers, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
                     "Content-Length": str(body_length(size))}, timeout=600)
        reply.raise_for_status()

    up_seconds, up_rss = await measured(process, upload())
    url = (await client.get(f"/api/ciphers/{item['id']}/attachment/{attachment_id}")).json()["url"]
    url = api_url + url[url.index("/attachments/"):]

    async def download(http: httpx.AsyncClient) -> None:
        received = 0
        async with http.stream("GET", url) as reply:
            reply.raise_for_status()
            async for piece in reply.aiter_raw():
                received += len(piece)
        assert received == size, (received, size)

    # made before the clock starts: a new client builds a TLS context (20-40 ms), the client's cost
    async with httpx.AsyncClient(timeout=600) as http:
        down_seconds, down_rss = await measured(process, download(http))
    return Transfer(size / up_seconds / 1e6, size / down_seconds / 1e6, up_rss, down_rss)


async def directly(url: str, block: bytes, size: int) -> tuple[float, float]:
    """MB/s of the same bytes into PostgreSQL and back, one chunk per statement."""
    conn = await asyncpg.connect(url)
    try:
        # a logged table, as stored_file_chunks is: a TEMP one writes no WAL and would measure less work
        await conn.execute("DROP TABLE IF EXISTS bench_copy")
        await conn.execute("CREATE TABLE bench_copy (key text, seq int, data bytea, PRIMARY KEY (key, seq))")
        await conn.execute("ALTER TABLE bench_copy ALTER COLUMN data SET STORAGE EXTERNAL")
        chunk = (block * (CHUNK // len(block) + 1))[:CHUNK]
        started = time.perf_counter()
        seq = 0
        for offset in range(0, size, CHUNK):
            await conn.execute("INSERT INTO bench_copy VALUES ('k', $1, $2)", seq, chunk[: min(CHUNK, size - offset)])
            seq += 1
        up = size / (time.perf_counter() - started) / 1e6
        started = time.perf_counter()
        for n in range(seq):
            await conn.fetchval("SELECT data FROM bench_copy WHERE key = 'k' AND seq = $1", n)
        down = size / (time.perf_counter() - started) / 1e6
        await conn.execute("DROP TABLE bench_copy")
        return up, down
    finally:
        await conn.close()


async def s3_directly(endpoint: str, block: bytes, size: int) -> tuple[float, float]:
    """MB/s of the same bytes through the S3 store itself, without the API."""
    store = await S3Store.open(Config(file_storage="s3", s3_bucket="bench", s3_endpoint_url=endpoint,
                                      s3_access_key_id="bench", s3_secret_access_key=Secret("bench")))
    try:
        key = f"direct/{uuid.uuid4().hex}"

        async def pieces() -> AsyncIterator[bytes]:
            sent = 0
            while sent < size:
                piece = block[: min(len(block), size - sent)]
                sent += len(piece)
                yield piece

        started = time.perf_counter()
        await store.put(key, pieces(), size)
        up = size / (time.perf_counter() - started) / 1e6
        started = time.perf_counter()
        async for _ in store.get(key):
            pass
        down = size / (time.perf_counter() - started) / 1e6
        await store.delete([key])
        return up, down
    finally:
        await store.close()


def start_api(url: str, port: int, log: Path, extra: dict[str, str], size: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DATABASE_URL": url, "DOMAIN": f"http://127.0.0.1:{port}", "LOG_LEVEL": "warning",
           "API_ADDRESS": "127.0.0.1", "API_PORT": str(port), "MAX_FILE_SIZE": str(size // 1024 + 1024), **extra}
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "pgwarden.cli", "api"], env=env, stdout=out,
                                stderr=subprocess.STDOUT)


async def run(url: str, runs: int, size: int, logs: Path) -> None:
    block = os.urandom(256 * 1024)  # encrypted files do not compress: neither does this
    moto_port = free_port()
    moto = subprocess.Popen([str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(moto_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results: dict[str, list[Transfer]] = {"postgresql": [], "s3": []}
    baseline: list[tuple[float, float]] = []
    s3_baseline: list[tuple[float, float]] = []
    try:
        for _ in range(50):
            try:
                httpx.put(f"http://127.0.0.1:{moto_port}/bench", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                await asyncio.sleep(0.2)
        stores = {"postgresql": {}, "s3": {
            "FILE_STORAGE": "s3", "S3_BUCKET": "bench", "S3_ENDPOINT_URL": f"http://127.0.0.1:{moto_port}",
            "S3_ACCESS_KEY_ID": "bench", "S3_SECRET_ACCESS_KEY": "bench"}}
        for _ in range(runs):
            baseline.append(await directly(url, block, size))
            s3_baseline.append(await s3_directly(f"http://127.0.0.1:{moto_port}", block, size))
            for name, extra in stores.items():
                port = free_port()
                api = start_api(url, port, logs / f"api-{name}.log", extra, size)
                try:
                    await until_alive(port, "API")
                    results[name].append(await through_api(f"http://127.0.0.1:{port}", psutil.Process(api.pid),
                                                            block, size))
                finally:
                    api.terminate()
                    api.wait(10)
    finally:
        moto.terminate()
        moto.wait(10)

    print(f"{size / MiB:.0f} MiB, {runs} run(s); baseline: asyncpg straight into PostgreSQL,"
          f" one {CHUNK // 1024} KiB chunk per statement; median [min-max], ratios taken within each run")
    print(f"{'':28} {'MB/s':>24} {'x baseline':>18} {'peak RSS growth':>16}")

    def row(label: str, rates: list[float], bases: list[float], rss: float | None = None) -> None:
        ratios = [rate / base for rate, base in zip(rates, bases)]
        grown = f"{rss:13.1f} MiB" if rss is not None else ""
        print(f"{label:28} {spread(rates, '.1f'):>24} {spread(ratios, '.2f'):>18} {grown:>16}")

    base_up, base_down = [b[0] for b in baseline], [b[1] for b in baseline]
    row("PostgreSQL directly: write", base_up, base_up)
    row("PostgreSQL directly: read", base_down, base_down)
    row("S3 store, no API: write", [b[0] for b in s3_baseline], base_up)
    row("S3 store, no API: read", [b[1] for b in s3_baseline], base_down)
    for name, transfers in results.items():
        row(f"API, {name}: upload", [t.up for t in transfers], base_up, max(t.up_rss for t in transfers))
        row(f"API, {name}: download", [t.down for t in transfers], base_down, max(t.down_rss for t in transfers))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size-mib", type=int, default=100)
    args = parser.parse_args()
    with scratch_database() as url, tempfile.TemporaryDirectory() as logs:
        asyncio.run(run(url, args.runs, args.size_mib * MiB, Path(logs)))


if __name__ == "__main__":
    main()
