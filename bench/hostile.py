"""What hostile clients get from pgwarden, and what a real client still gets while they try.

Starts the API (`pgwarden api`) and the hub (`pgwarden hub`) as processes of their own on a
scratch database, both on 127.0.0.1 and both with TRUSTED_PROXIES=none (a loopback attacker is
then an internet client, not a proxy). Then a real client, in its own process:

- device A refreshes its token, syncs, and holds a hub connection opened with its token;
- device B of the same account changes one of the account's 20 items;
- A's hub connection hears the change (SyncCipherUpdate). "Commit" is when a bare LISTEN
  connection, in a process of its own that does nothing else, hears PostgreSQL's NOTIFY for it
  (a NOTIFY leaves at COMMIT): commit -> notification is what the hub adds to PostgreSQL's own
  delivery, as in bench/hub_latency.py.

The client runs through three phases: quiet, attack, after. During the attack, in processes of
their own (at nice 10, so that their own work, which a real attacker does on its own machines,
takes little of the cores from the servers), from other loopback addresses:

- anonymous-hub flood: sockets that do the SignalR handshake, send 16 invocations with
  4000-character targets (one in eight a 64 KiB message instead) without reading, read only to
  learn how the hub closed them, drop the connection, and start again;
- handshake-less sockets: WebSocket upgrades to the anonymous hub that never send the SignalR
  handshake; and plain TCP connections to the API and the hub that never send a byte;
- huge bodies: 16 MiB forms to the token endpoint, 28 MiB to prelogin and 20 MiB to register
  (with a Content-Length, and chunked without one), each sent whole whatever the answer;
- a signed-in user importing 2500 items (25 MiB) over and over, and a 33 MiB import;
- wrong passwords on the token endpoint from four addresses, a third of them for A's account.

Every loop is bounded in count and in time; the run stops by itself. Prints, for each run: the
real client's p50/p99 (token refresh, sync, write, commit -> notification) under attack and after
it, divided by the same figures of the quiet phase; the API's and hub's RSS (the hub's with its
workers) before, at the peak of, at the end of and after the attack; what each attacker got; the hub's own refusal and drop
counts; CPU use. Then the median and spread (min-max) of the headline figures over the runs, and
whether the aims were met: p99 under attack within 2x of quiet, RSS after the attack within 10%
of before. Asserts nothing.

    python bench/hostile.py [--runs 3] [--quiet 20] [--attack 30] [--after 20] [--attacks flood,silent]

``--attacks`` narrows the mix to some of its parts, to see which one costs the real client what;
``--attacks flood,silent,bodies,passwords`` is the mix the hardening issue names, without this
bench's own importer.

Uses DATABASE_URL (a scratch database is created and dropped) or an embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import secrets
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import asyncpg
import httpx
import msgpack
import psutil
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.api_stalls import import_body  # noqa: E402
from bench.scratch import free_port, percentile, scratch_database, until_alive  # noqa: E402
from db.events import CHANNEL  # noqa: E402
from tests.support.bwclient import BitwardenClient  # noqa: E402
from wshub.codec import Invocation, MessagePackProtocol, MessageReader, encode_varint  # noqa: E402

DOMAIN = "https://bench.invalid"
MiB = 1024 * 1024
PASSWORD = "correct horse battery staple"
#: the real client's account holds this many items; B changes them in turn, so the vault (and a
#: sync) is the same size in every phase
ITEMS = 20
#: the client's pause between rounds (refresh, sync, write, notification)
PAUSE = 0.02
#: how long the client waits for the notification of one write before it counts it as missed
NOTIFICATION_WAIT = 5.0
#: the first seconds of the client's run warm it up and are not counted
WARMUP = 3.0
#: seconds after the attack stops before the "after" figures begin: the hub closes what the
#: attackers left (handshake deadline, close timeouts) within this
SETTLE = 8.0
#: the aims
LATENCY_AIM = 2.0
MEMORY_AIM = 0.10
#: attackers run at this niceness: they get the cores only when the servers do not want them
ATTACKER_NICENESS = 10
SPARE_SECONDS = 10.0  # an attacker stops at the latest this long after the attack should have

# the attackers' addresses (the real client is 127.0.0.1)
FLOOD_ADDRESSES = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
SILENT_ADDRESSES = ["127.0.0.6", "127.0.0.7"]
IDLE_TCP_ADDRESS = "127.0.0.8"
BODIES_ADDRESS = "127.0.0.9"
IMPORT_ADDRESS = "127.0.0.10"
LOGIN_ADDRESSES = ["127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.14"]

#: sockets each flood address keeps going, and lives (connections) each may use at most; with the
#: handshake-less sockets they ask for more than HUB_MAX_ANONYMOUS_CONNECTIONS (1000)
FLOOD_SOCKETS = 160
FLOOD_LIVES = 6000
FLOOD_INVOCATIONS = 16
SILENT_SOCKETS = 200
SILENT_LIVES = 3200
IDLE_TCP_SOCKETS = 500  # to each server
BODY_SENDERS = 4
BODY_REQUESTS = 150  # per sender
IMPORTS = 4
LOGIN_ATTEMPTS = 400  # per address


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


# ==== the real client, in its own process ========================================================


@dataclass
class ClientRecord:
    """What the real client saw, with wall-clock times so that phases can be cut out later."""

    samples: list[tuple[str, float, float, int]] = field(default_factory=list)  # kind, start, seconds, status
    writes: list[tuple[str, float]] = field(default_factory=list)  # item id, sent
    heard: dict[str, list[float]] = field(default_factory=dict)  # item id -> hub receipt times
    hub_reconnects: int = 0


class HubLink:
    """Device A's hub connection: notes when each item's notification arrives; reconnects if dropped."""

    def __init__(self, url: str, record: ClientRecord, token: Callable[[], str]) -> None:
        self.url = url
        self.record = record
        self.token = token
        self.arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        ws = await self._connect()
        self._task = asyncio.create_task(self._run(ws))

    async def _connect(self) -> Any:
        ws = await websockets.connect(f"{self.url}?access_token={self.token()}", max_size=None, ping_interval=None)
        await ws.send('{"protocol":"messagepack","version":1}\x1e')
        if await asyncio.wait_for(ws.recv(), 10) != "{}\x1e":
            raise RuntimeError("the hub refused the handshake")
        return ws

    async def _run(self, ws: Any) -> None:
        while True:
            reader = MessageReader(MessagePackProtocol(), 1 << 20)
            try:
                async for frame in ws:
                    now = time.time()
                    if not isinstance(frame, bytes):
                        continue
                    for message in reader.feed(frame):
                        if isinstance(message, Invocation) and message.target == "ReceiveMessage":
                            item = message.arguments[0]["Payload"].get("Id")
                            self.record.heard.setdefault(str(item), []).append(now)
                            self.arrived.set()
            except websockets.ConnectionClosed:
                pass
            self.record.hub_reconnects += 1
            ws = await self._connect()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def wait_for(self, item: str, since: float, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not any(t >= since for t in self.record.heard.get(item, ())):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), left)
            except TimeoutError:
                return False
        return True


async def _real_client(api: str, hub: str, email: str, ready: Any, go: Any, stop: Any,
                       results: Any) -> None:
    record = ClientRecord()
    a = BitwardenClient(api)
    await a.register(email, PASSWORD)
    await a.login()
    b = BitwardenClient(api)
    await b.login(email, PASSWORD)
    ids = []
    for n in range(ITEMS):
        reply = await b.post("/api/ciphers", b.login_item(f"item {n}"))
        reply.raise_for_status()
        ids.append(reply.json()["id"])

    link = HubLink(f"{hub}/notifications/hub", record, lambda: a.access_token)
    await link.start()
    ready.release()
    while not go.is_set():
        await asyncio.sleep(0.02)

    async def timed(kind: str, call: Awaitable[httpx.Response]) -> None:
        start, began = time.time(), time.perf_counter()
        try:
            status = (await call).status_code
        except httpx.HTTPError:
            status = 0
        record.samples.append((kind, start, time.perf_counter() - began, status))

    round_number = 0
    while not stop.is_set():
        await timed("refresh", a.refresh())
        await timed("sync", a.get("/api/sync"))
        item = ids[round_number % ITEMS]
        sent = time.time()
        await timed("write", b.put(f"/api/ciphers/{item}", b.login_item(f"item {round_number}")))
        record.writes.append((item, sent))
        await link.wait_for(item, sent, NOTIFICATION_WAIT)
        round_number += 1
        await asyncio.sleep(PAUSE)

    await link.stop()
    await a.aclose()
    await b.aclose()
    results.put(record)


def real_client(*args: Any) -> None:
    asyncio.run(_real_client(*args))


async def _commit_clock(database_url: str, ready: Any, stop: Any, results: Any) -> None:
    committed: dict[str, list[float]] = {}
    conn = await asyncpg.connect(database_url)
    await conn.add_listener(
        CHANNEL, lambda *args: committed.setdefault(json.loads(args[3])["item"], []).append(time.time()))
    ready.release()
    while not stop.is_set():
        await asyncio.sleep(0.05)
    await conn.close()
    results.put(committed)


def commit_clock(*args: Any) -> None:
    """When each event's NOTIFY reached a bare LISTEN connection: item id -> times."""
    asyncio.run(_commit_clock(*args))


# ==== raw sockets for the attackers ==============================================================
# Hand-made bytes: an attacker spends as little of its own CPU as it can per request.


def ws_frame(payload: bytes, opcode: int = 2) -> bytes:
    """A client WebSocket frame, masked with a zero key (legal, and nothing to compute)."""
    n = len(payload)
    if n < 126:
        length = bytes([0x80 | n])
    elif n < 65536:
        length = bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        length = bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return bytes([0x80 | opcode]) + length + b"\0\0\0\0" + payload


def upgrade_request(port: int, path: str) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()


def invocation(invocation_id: str, target: str) -> bytes:
    body = msgpack.packb([1, {}, invocation_id, target, []])
    return encode_varint(len(body)) + body


HANDSHAKE = ws_frame(b'{"protocol":"messagepack","version":1}\x1e', opcode=1)
#: 16 calls with targets as large as a message on the anonymous hub allows (4096 bytes)
INVOCATIONS = b"".join(ws_frame(invocation(str(n), "T" * 4000)) for n in range(FLOOD_INVOCATIONS))
#: one message sixteen times the anonymous hub's limit
OVERSIZED = ws_frame(invocation("0", "T" * 65000))


class Sockets:
    """An attacker's open connections, so that whatever is left open is dropped at the end."""

    def __init__(self) -> None:
        self.open: set[asyncio.StreamWriter] = set()

    async def connect(self, port: int, address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(address, 0))
        self.open.add(writer)
        return reader, writer

    def drop(self, writer: asyncio.StreamWriter) -> None:
        """Cut the connection with a reset, as an attacker that does not wait for goodbyes (and
        leaves no TIME_WAIT behind to run this machine out of ports)."""
        self.open.discard(writer)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        writer.transport.abort()

    def drop_all(self) -> None:
        for writer in list(self.open):
            self.drop(writer)


async def read_status(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The status of an HTTP answer, and its body when it has a Content-Length."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = next((int(line.split(b":")[1]) for line in lines if line.lower().startswith(b"content-length:")), 0)
    return status, await reader.readexactly(length) if length else b""


async def close_code(reader: asyncio.StreamReader) -> str:
    """Read server frames until the WebSocket close frame; what it said, or how the link ended."""
    buffer = b""
    while True:
        data = await reader.read(65536)
        if not data:
            return "ended without a close frame"
        buffer += data
        while len(buffer) >= 2:
            opcode, length, at = buffer[0] & 0x0F, buffer[1] & 0x7F, 2
            if length == 126:
                length, at = int.from_bytes(buffer[2:4], "big"), 4
            elif length == 127:
                length, at = int.from_bytes(buffer[2:10], "big"), 10
            if len(buffer) < at + length:
                break
            if opcode == 8:
                payload = buffer[at:at + length]
                return f"closed {int.from_bytes(payload[:2], 'big')}" if len(payload) >= 2 else "closed"
            buffer = buffer[at + length:]


def outcome_of(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "no answer in time"
    if isinstance(error, (ConnectionError, asyncio.IncompleteReadError)):
        return "connection reset"
    if isinstance(error, OSError):
        return f"cannot connect ({error.strerror})"
    return type(error).__name__


# ==== the attacks ================================================================================


@dataclass
class Target:
    api_port: int
    hub_port: int
    victim_email: str


class Attack:
    """One kind of attack in one process: it prepares (before the quiet phase), then runs until
    told to stop, counting what it got."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.counts: Counter[str] = Counter()
        self.sockets = Sockets()
        self.notes: list[str] = []

    async def prepare(self) -> None:
        pass

    async def run(self) -> None:
        raise NotImplementedError

    async def finish(self) -> None:
        self.sockets.drop_all()

    async def repeat(self, lives: int, life: Callable[[], Awaitable[str]]) -> None:
        """One socket's worth of attack: ``life`` over and over, each outcome counted."""
        for _ in range(lives):
            try:
                self.counts[await life()] += 1
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - an attacker counts whatever happens
                self.counts[outcome_of(error)] += 1


class HubFlood(Attack):
    """Anonymous-hub sockets that invoke with large targets and never read while they send."""

    async def run(self) -> None:
        tasks = [self.repeat(FLOOD_LIVES // FLOOD_SOCKETS, self._life_of(address, n % 8 == 0))
                 for address in FLOOD_ADDRESSES for n in range(FLOOD_SOCKETS)]
        await asyncio.gather(*tasks)

    def _life_of(self, address: str, oversized: bool) -> Callable[[], Awaitable[str]]:
        port = self.target.hub_port

        async def life() -> str:
            reader, writer = await self.sockets.connect(port, address)
            try:
                writer.write(upgrade_request(port, f"/notifications/anonymous-hub?Token={uuid.uuid4()}"))
                status, _ = await asyncio.wait_for(read_status(reader), 10)
                if status != 101:
                    return f"HTTP {status}"
                writer.write(HANDSHAKE + (OVERSIZED if oversized else INVOCATIONS))
                await writer.drain()
                return await asyncio.wait_for(close_code(reader), 15)
            finally:
                self.sockets.drop(writer)

        return life


class SilentSockets(Attack):
    """Upgrades to the anonymous hub that never send the SignalR handshake, and TCP connections to
    both servers that never send anything."""

    async def run(self) -> None:
        idle = await asyncio.gather(*(self._idle(port) for port in (self.target.api_port, self.target.hub_port)
                                      for _ in range(IDLE_TCP_SOCKETS)))
        silent = [self.repeat(SILENT_LIVES // (SILENT_SOCKETS * len(SILENT_ADDRESSES)), self._life_of(address))
                  for address in SILENT_ADDRESSES for _ in range(SILENT_SOCKETS)]
        try:
            await asyncio.gather(*silent)
        finally:
            await self._count_idle(idle)

    async def _idle(self, port: int) -> tuple[str, asyncio.StreamReader | None]:
        name = "API" if port == self.target.api_port else "hub"
        try:
            reader, _ = await self.sockets.connect(port, IDLE_TCP_ADDRESS)
            return name, reader
        except OSError as error:
            self.counts[f"idle TCP to the {name}: {outcome_of(error)}"] += 1
            return name, None

    async def _count_idle(self, idle: list[tuple[str, asyncio.StreamReader | None]]) -> None:
        for name, reader in idle:
            if reader is None:
                continue
            try:
                data = await asyncio.wait_for(reader.read(4096), 0.01)
                state = "closed by the server" if not data else f"answered {data[:12]!r}"
            except TimeoutError:
                state = "still open when the attack ended"
            except ConnectionError:
                state = "reset by the server"
            self.counts[f"idle TCP to the {name}: {state}"] += 1

    def _life_of(self, address: str) -> Callable[[], Awaitable[str]]:
        port = self.target.hub_port

        async def life() -> str:
            reader, writer = await self.sockets.connect(port, address)
            try:
                writer.write(upgrade_request(port, f"/notifications/anonymous-hub?Token={uuid.uuid4()}"))
                status, _ = await asyncio.wait_for(read_status(reader), 10)
                if status != 101:
                    return f"HTTP {status}"
                started = time.monotonic()
                ended = await asyncio.wait_for(close_code(reader), 30)
                return f"{ended} after {round(time.monotonic() - started)} s"
            finally:
                self.sockets.drop(writer)

        return life


class HugeBodies(Attack):
    """Bodies of megabytes to the routes anyone may call, sent whole whatever the answer."""

    async def prepare(self) -> None:
        form = b"a=b&" * (4 * MiB)
        prelogin = b'{"email": "' + b"x" * (28 * MiB) + b'"}'
        register = b'{"email": "a@b.c", "key": "' + b"k" * (20 * MiB) + b'"}'
        self.requests = [
            ("token, 16 MiB form", "/identity/connect/token", "application/x-www-form-urlencoded", form, False),
            ("prelogin, 28 MiB", "/identity/accounts/prelogin/password", "application/json", prelogin, False),
            ("register, 20 MiB", "/identity/accounts/register", "application/json", register, False),
            ("prelogin, 28 MiB chunked", "/identity/accounts/prelogin/password", "application/json", prelogin, True),
            ("register, 20 MiB chunked", "/identity/accounts/register", "application/json", register, True),
        ]

    async def run(self) -> None:
        await asyncio.gather(*(self._sender(n) for n in range(BODY_SENDERS)))

    async def _sender(self, offset: int) -> None:
        for n in range(BODY_REQUESTS):
            name, path, content_type, body, chunked = self.requests[(n + offset) % len(self.requests)]
            try:
                outcome = await self._send(path, content_type, body, chunked)
            except Exception as error:  # noqa: BLE001
                outcome = outcome_of(error)
            self.counts[f"{name}: {outcome}"] += 1

    async def _send(self, path: str, content_type: str, body: bytes, chunked: bool) -> str:
        port = self.target.api_port
        reader, writer = await self.sockets.connect(port, BODIES_ADDRESS)
        answer = asyncio.create_task(read_status(reader))
        try:
            length = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}"
            writer.write(f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: {content_type}\r\n{length}\r\n\r\n"
                         .encode())
            view = memoryview(body)
            try:
                for at in range(0, len(body), MiB):
                    piece = view[at:at + MiB]
                    writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if chunked else piece)
                    await writer.drain()
                if chunked:
                    writer.write(b"0\r\n\r\n")
                    await writer.drain()
            except ConnectionError:
                pass  # the server stopped reading: as expected, once it has answered
            try:
                status, _ = await asyncio.wait_for(answer, 10)
                return f"HTTP {status}"
            except (asyncio.IncompleteReadError, ConnectionError):
                return "reset before any answer"
        finally:
            answer.cancel()
            self.sockets.drop(writer)


class BigImports(Attack):
    """A signed-in user importing 2500 items (25 MiB) again and again, and one import too large."""

    async def prepare(self) -> None:
        self.client = BitwardenClient(f"http://127.0.0.1:{self.target.api_port}", local_address=IMPORT_ADDRESS)
        self.client.http.timeout = httpx.Timeout(120)
        await self.client.register(f"importer-{uuid.uuid4().hex[:8]}@bench.invalid", PASSWORD)
        await self.client.login()
        self.body = import_body(2500)
        self.too_big = b'{"ciphers": [], "folders": [], "x": "' + b"x" * (33 * MiB) + b'"}'

    async def run(self) -> None:
        headers = {"Content-Type": "application/json"}
        for n in range(IMPORTS):
            started = time.perf_counter()
            try:
                reply = await self.client.post("/api/ciphers/import", content=self.body, headers=headers)
                self.counts[f"import of {len(self.body) / MiB:.0f} MiB: HTTP {reply.status_code}"] += 1
                self.notes.append(f"import {n + 1} took {time.perf_counter() - started:.1f} s")
            except httpx.HTTPError as error:
                self.counts[f"import: {type(error).__name__}"] += 1
        try:
            reply = await self.client.post("/api/ciphers/import", content=self.too_big, headers=headers)
            self.counts[f"import of {len(self.too_big) / MiB:.0f} MiB: HTTP {reply.status_code}"] += 1
        except httpx.HTTPError as error:
            self.counts[f"import of 33 MiB: {type(error).__name__}"] += 1

    async def finish(self) -> None:
        await self.client.aclose()


class WrongPasswords(Attack):
    """Password grants with wrong passwords from four addresses, one request at a time each."""

    async def run(self) -> None:
        await asyncio.gather(*(self._guesser(address) for address in LOGIN_ADDRESSES))

    def _request(self, n: int) -> bytes:
        email = self.target.victim_email if n % 3 == 0 else f"guess-{n}-{secrets.token_hex(3)}@bench.invalid"
        form = urlencode({"grant_type": "password", "username": email, "password": f"wrong-{n}",
                          "scope": "api offline_access", "client_id": "cli", "deviceType": "25",
                          "deviceIdentifier": str(uuid.uuid4()), "deviceName": "linux"}).encode()
        return (b"POST /identity/connect/token HTTP/1.1\r\nHost: bench\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n"
                + f"Content-Length: {len(form)}\r\n\r\n".encode() + form)

    async def _guesser(self, address: str) -> None:
        port = self.target.api_port
        connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        for n in range(LOGIN_ATTEMPTS):
            try:
                if connection is None:
                    connection = await self.sockets.connect(port, address)
                reader, writer = connection
                writer.write(self._request(n))
                status, body = await asyncio.wait_for(read_status(reader), 30)
                error = json.loads(body).get("error", "") if body else ""
                self.counts[f"HTTP {status} {error}".strip()] += 1
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001
                self.counts[outcome_of(error)] += 1
                if connection is not None:
                    self.sockets.drop(connection[1])
                connection = None


ATTACKS: dict[str, type[Attack]] = {
    "flood": HubFlood,
    "silent": SilentSockets,
    "bodies": HugeBodies,
    "imports": BigImports,
    "passwords": WrongPasswords,
}
DESCRIPTIONS = {
    "flood": "anonymous-hub invocation flood",
    "silent": "handshake-less and idle sockets",
    "bodies": "huge bodies to token, prelogin, register",
    "imports": "big imports by a signed-in user",
    "passwords": "wrong passwords from four addresses",
}


async def _attacker(kind: str, target: Target, seconds: float, ready: Any, go: Any, stop: Any,
                    results: Any) -> None:
    attack = ATTACKS[kind](target)
    await attack.prepare()
    ready.release()
    while not go.is_set():
        await asyncio.sleep(0.02)
    started = time.monotonic()
    running = asyncio.create_task(attack.run())
    while not (stop.is_set() or running.done() or time.monotonic() - started > seconds + SPARE_SECONDS):
        await asyncio.sleep(0.05)
    if running.done() and not stop.is_set():
        attack.notes.append(f"ran out of its count after {time.monotonic() - started:.1f} s")
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    await attack.finish()
    results.put((kind, dict(attack.counts), attack.notes))


def attacker(niceness: int, *args: Any) -> None:
    os.nice(niceness)
    asyncio.run(_attacker(*args))


# ==== the run ====================================================================================


@dataclass
class Phase:
    name: str
    start: float = 0.0
    end: float = 0.0

    def holds(self, moment: float) -> bool:
        return self.start <= moment < self.end


@dataclass
class RunResult:
    latency: dict[str, dict[str, tuple[float, float, int, int]]]  # measure -> phase -> p50, p99, n, failed
    rss: dict[str, dict[str, float]]  # process -> before, peak, end, after (bytes)
    missed_notifications: dict[str, int]
    hub_reconnects: int
    attacks: list[tuple[str, dict[str, int], list[str]]]
    hub_counts: dict[str, float]
    cpu: dict[str, dict[str, float]]  # phase -> who -> share of all cores
    log_lines: dict[str, list[str]]


def start_server(kind: str, url: str, port: int, log: Path, extra: dict[str, str]) -> subprocess.Popen[bytes]:
    address = {"api": {"API_ADDRESS": "127.0.0.1", "API_PORT": str(port)},
               "hub": {"WEBSOCKET_ADDRESS": "127.0.0.1", "WEBSOCKET_PORT": str(port)}}[kind]
    env = {**os.environ, "DATABASE_URL": url, "DOMAIN": DOMAIN, "LOG_LEVEL": "warning",
           # the attackers come from loopback addresses: taken for proxies, they could name any address
           "TRUSTED_PROXIES": "none", **address, **extra}
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "pgwarden.cli", kind], env=env, stdout=out,
                                stderr=subprocess.STDOUT)


def tree(process: psutil.Process) -> list[psutil.Process]:
    """The process and its children: the hub's work is done by its workers (HUB_WORKERS), not by
    the process that started them."""
    try:
        return [process, *process.children(recursive=True)]
    except psutil.Error:
        return [process]


def cpu_seconds(process: psutil.Process) -> float:
    try:
        return sum(times.user + times.system for times in (each.cpu_times() for each in tree(process)))
    except psutil.Error:
        return float("nan")


def resident(process: psutil.Process) -> int:
    """Resident memory of the process and its children."""
    return sum(each.memory_info().rss for each in tree(process))


def busy_seconds() -> float:
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


async def run_once(url: str, quiet: float, attack_seconds: float, after: float, logs: Path, kinds: list[str],
                   niceness: int) -> RunResult:
    api_port, hub_port = free_port(), free_port()
    metrics_token = secrets.token_hex(16)
    api = start_server("api", url, api_port, logs / "api.log", {})
    hub: subprocess.Popen[bytes] | None = None
    ctx = mp.get_context("spawn")
    workers: list[Any] = []
    go, attack_go, stop, attack_stop = ctx.Event(), ctx.Event(), ctx.Event(), ctx.Event()
    ready, results, attack_results, clock_results = ctx.Semaphore(0), ctx.Queue(), ctx.Queue(), ctx.Queue()
    try:
        await until_alive(api_port, "API")  # it migrated the database and made its keys
        hub = start_server("hub", url, hub_port, logs / "hub.log", {"METRICS_TOKEN": metrics_token})
        await until_alive(hub_port, "hub")
        api_process, hub_process = psutil.Process(api.pid), psutil.Process(hub.pid)

        victim = f"real-{uuid.uuid4().hex[:8]}@bench.invalid"
        client = ctx.Process(target=real_client, args=(
            f"http://127.0.0.1:{api_port}", f"ws://127.0.0.1:{hub_port}", victim, ready, go, stop, results))
        clock = ctx.Process(target=commit_clock, args=(url, ready, stop, clock_results))
        workers += [client, clock]
        target = Target(api_port, hub_port, victim)
        attackers = [ctx.Process(target=attacker, args=(niceness, kind, target, attack_seconds, ready, attack_go,
                                                        attack_stop, attack_results)) for kind in kinds]
        workers += attackers
        clock.start()
        client.start()
        await _acquire(ready, 120)
        await _acquire(ready, 120)  # the client registered, logged in and connected first
        for process in attackers:
            process.start()
        for _ in attackers:
            await _acquire(ready, 120)

        rss: list[tuple[float, int, int]] = []
        sampling = asyncio.create_task(_sample_rss(api_process, hub_process, rss))
        watched = {"API": api_process, "hub": hub_process, "real client": psutil.Process(client.pid),
                   **{f"attacker: {kind}": psutil.Process(p.pid) for kind, p in zip(kinds, attackers)}}
        phases = [Phase("quiet"), Phase("attack"), Phase("after")]
        cpu: dict[str, dict[str, float]] = {}

        go.set()
        await asyncio.sleep(WARMUP)
        phases[0].start = time.time()
        before = _cpu_snapshot(watched)
        await asyncio.sleep(quiet)
        phases[0].end = phases[1].start = time.time()
        cpu["quiet"] = _cpu_shares(before, _cpu_snapshot(watched), quiet)
        before = _cpu_snapshot(watched)
        attack_go.set()
        await asyncio.sleep(attack_seconds)
        phases[1].end = time.time()
        cpu["attack"] = _cpu_shares(before, _cpu_snapshot(watched), attack_seconds)
        attack_stop.set()
        attacks = [attack_results.get(timeout=60) for _ in attackers]
        await asyncio.sleep(max(0.0, SETTLE - (time.time() - phases[1].end)))
        phases[2].start = time.time()
        await asyncio.sleep(after)
        phases[2].end = time.time()
        stop.set()
        record: ClientRecord = results.get(timeout=60)
        committed: dict[str, list[float]] = clock_results.get(timeout=60)
        sampling.cancel()
        hub_counts = _hub_counts(hub_port, metrics_token)
    finally:
        go.set()
        stop.set()
        attack_go.set()
        attack_stop.set()
        for worker in workers:
            if worker.pid is not None:
                worker.join(30)
        for server in (hub, api):
            if server is not None:
                server.terminate()
                server.wait(30)

    return RunResult(
        latency=_latencies(record, committed, phases),
        rss=_rss_figures(rss, phases),
        missed_notifications={p.name: sum(1 for item, sent in record.writes if p.holds(sent)
                                          and _first(record.heard.get(item), sent) is None) for p in phases},
        hub_reconnects=record.hub_reconnects,
        attacks=sorted(attacks, key=lambda entry: list(ATTACKS).index(entry[0])),
        hub_counts=hub_counts,
        cpu=cpu,
        log_lines={name: _log_lines(logs / f"{name}.log") for name in ("api", "hub")},
    )


async def _acquire(semaphore: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not semaphore.acquire(timeout=0.01):
        if time.monotonic() > deadline:
            raise RuntimeError("a client or attacker process did not get ready")
        await asyncio.sleep(0.05)


async def _sample_rss(api: psutil.Process, hub: psutil.Process, into: list[tuple[float, int, int]]) -> None:
    while True:
        into.append((time.time(), resident(api), resident(hub)))
        await asyncio.sleep(0.25)


def _cpu_snapshot(watched: dict[str, psutil.Process]) -> dict[str, float]:
    return {"all processes": busy_seconds(), **{name: cpu_seconds(p) for name, p in watched.items()}}


def _cpu_shares(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, float]:
    cores = psutil.cpu_count() or 1
    return {name: (after[name] - before[name]) / (seconds * cores) for name in before}


def _hub_counts(port: int, token: str) -> dict[str, float]:
    """The hub's own refusal and drop counts, from its /metrics."""
    reply = httpx.get(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {token}"})
    counts = {}
    for line in reply.text.splitlines():
        if line.startswith(("pgwarden_hub_refused_connections_total", "pgwarden_hub_dropped_connections_total")):
            name, value = line.rsplit(" ", 1)
            counts[name.replace("pgwarden_hub_", "").replace("_connections_total", "")] = float(value)
    return counts


def _log_lines(path: Path) -> list[str]:
    try:
        return [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return []


def _first(times: list[float] | None, since: float) -> float | None:
    later = [t for t in times or () if t >= since]
    return min(later) if later else None


def _latencies(record: ClientRecord, committed_at: dict[str, list[float]], phases: list[Phase]) -> dict[str, dict[str, tuple[float, float, int, int]]]:
    figures: dict[str, dict[str, tuple[float, float, int, int]]] = {}
    for kind in ("refresh", "sync", "write"):
        figures[kind] = {}
        for phase in phases:
            inside = [(seconds, status) for k, start, seconds, status in record.samples
                      if k == kind and phase.holds(start)]
            ok = [seconds * 1000 for seconds, status in inside if status == 200]
            figures[kind][phase.name] = (percentile(ok, 0.5), percentile(ok, 0.99), len(ok), len(inside) - len(ok))
    figures["notification"] = {}
    for phase in phases:
        delays, missed = [], 0
        for item, sent in record.writes:
            if not phase.holds(sent):
                continue
            heard, committed = _first(record.heard.get(item), sent), _first(committed_at.get(item), sent)
            if heard is None or committed is None:
                missed += 1
            else:
                delays.append((heard - committed) * 1000)
        figures["notification"][phase.name] = (percentile(delays, 0.5), percentile(delays, 0.99), len(delays), missed)
    return figures


def _rss_figures(samples: list[tuple[float, int, int]], phases: list[Phase]) -> dict[str, dict[str, float]]:
    quiet, attack, after = phases
    figures = {}
    for index, name in ((1, "API"), (2, "hub")):
        def values(start: float, end: float) -> list[float]:
            return [float(sample[index]) for sample in samples if start <= sample[0] < end]

        figures[name] = {
            "before": statistics.median(values(quiet.end - 5, quiet.end)),
            "peak": max(values(attack.start, attack.end + SETTLE)),
            "end": statistics.median(values(attack.end - 1, attack.end)),
            "after": statistics.median(values(after.end - 3, after.end)),
        }
    return figures


# ==== the report =================================================================================

MEASURES = {"refresh": "token refresh (A)", "sync": "sync (A)", "write": "write (B)",
            "notification": "commit -> notification (A)"}


def report(number: int, result: RunResult) -> None:
    print(f"\n== run {number} ==\n")
    print("real client: latency in ms; x = divided by the quiet phase's figure\n")
    print(f"| {'measure':<28} | {'quiet p50':>9} | {'quiet p99':>9} | {'attack p50':>10} | {'attack p99':>10} "
          f"| {'p50 x':>6} | {'p99 x':>6} | {'after p99 x':>11} | {'n q/a/after':>13} | {'failed q/a/after':>16} |")
    print(f"|{'-' * 30}|{'-' * 11}|{'-' * 11}|{'-' * 12}|{'-' * 12}|{'-' * 8}|{'-' * 8}|{'-' * 13}|{'-' * 15}|{'-' * 18}|")
    for kind, label in MEASURES.items():
        phases = result.latency[kind]
        q50, q99, qn, qf = phases["quiet"]
        a50, a99, an, af = phases["attack"]
        _, f99, fn, ff = phases["after"]
        print(f"| {label:<28} | {q50:>9.2f} | {q99:>9.2f} | {a50:>10.2f} | {a99:>10.2f} | {a50 / q50:>6.2f} "
              f"| {a99 / q99:>6.2f} | {f99 / q99:>11.2f} | {f'{qn}/{an}/{fn}':>13} | {f'{qf}/{af}/{ff}':>16} |")
    print(f"(failed: an answer other than 200, or for notifications none within {NOTIFICATION_WAIT:g} s; "
          f"A's hub connection reconnected {result.hub_reconnects} times)")

    print("\nresident memory, MiB\n")
    print(f"| {'process':<7} | {'before':>7} | {'peak':>7} | {'end of attack':>13} | {'after':>7} | {'after/before':>12} |")
    print(f"|{'-' * 9}|{'-' * 9}|{'-' * 9}|{'-' * 15}|{'-' * 9}|{'-' * 14}|")
    for name, figures in result.rss.items():
        print(f"| {name:<7} | {figures['before'] / MiB:>7.1f} | {figures['peak'] / MiB:>7.1f} "
              f"| {figures['end'] / MiB:>13.1f} | {figures['after'] / MiB:>7.1f} "
              f"| {figures['after'] / figures['before']:>12.3f} |")

    print("\nwhat the attackers got\n")
    for kind, counts, notes in result.attacks:
        print(f"  {DESCRIPTIONS[kind]}: {sum(counts.values())} tries" + (f" ({'; '.join(notes)})" if notes else ""))
        for outcome, count in sorted(counts.items(), key=lambda entry: -entry[1]):
            print(f"    {count:>6}  {outcome}")
    print("\n  the hub's own counts (/metrics):")
    for name, value in sorted(result.hub_counts.items()):
        print(f"    {value:>6.0f}  {name}")

    cores = psutil.cpu_count()
    print(f"\nCPU, share of all {cores} cores (\"all processes\" includes PostgreSQL and other users' work)\n")
    for phase, shares in result.cpu.items():
        print(f"  {phase:<7} " + ", ".join(f"{name} {share:.0%}" for name, share in shares.items()))

    for name, lines in result.log_lines.items():
        if lines:
            distinct = Counter(line.split(" ", 3)[-1][:160] for line in lines)
            print(f"\n{name} log: {len(lines)} lines at warning or above; the most frequent:")
            for line, count in distinct.most_common(5):
                print(f"    {count:>5}  {line}")


def headline(result: RunResult) -> dict[str, float]:
    figures = {}
    for kind, label in MEASURES.items():
        phases = result.latency[kind]
        figures[f"{label} p50 x"] = phases["attack"][0] / phases["quiet"][0]
        figures[f"{label} p99 x"] = phases["attack"][1] / phases["quiet"][1]
    for name, rss in result.rss.items():
        figures[f"{name} RSS peak/before"] = rss["peak"] / rss["before"]
        figures[f"{name} RSS after/before"] = rss["after"] / rss["before"]
    return figures


def summary(results: list[RunResult]) -> None:
    rows = [headline(result) for result in results]
    print(f"\n== {len(results)} runs: median and spread (min-max) ==\n")
    print(f"| {'figure':<44} | " + " | ".join(f"run {n + 1:<3}" for n in range(len(rows)))
          + f" | {'median':>7} | {'spread':>13} |")
    print(f"|{'-' * 46}|" + "|".join("-" * 9 for _ in rows) + f"|{'-' * 9}|{'-' * 15}|")
    for name in rows[0]:
        values = [row[name] for row in rows]
        print(f"| {name:<44} | " + " | ".join(f"{value:>7.2f}" for value in values)
              + f" | {statistics.median(values):>7.2f} | {min(values):>5.2f} - {max(values):<5.2f} |")

    print("\naims (on the median of the runs):")
    for kind, label in MEASURES.items():
        value = statistics.median(row[f"{label} p99 x"] for row in rows)
        print(f"  {label} p99 under attack within {LATENCY_AIM:g}x of quiet: "
              f"{'met' if value <= LATENCY_AIM else 'MISSED'} ({value:.2f}x)")
    for name in results[0].rss:
        value = statistics.median(row[f"{name} RSS after/before"] for row in rows)
        print(f"  {name} RSS after the attack within {MEMORY_AIM:.0%} of before: "
              f"{'met' if abs(value - 1) <= MEMORY_AIM else 'MISSED'} ({value:.3f})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quiet", type=float, default=20.0, help="seconds of the quiet phase")
    parser.add_argument("--attack", type=float, default=30.0, help="seconds of the attack")
    parser.add_argument("--after", type=float, default=20.0, help="seconds measured after the attack")
    parser.add_argument("--attacks", default=",".join(ATTACKS),
                        help=f"which attacks, comma-separated (default all: {','.join(ATTACKS)})")
    parser.add_argument("--attacker-nice", type=int, default=ATTACKER_NICENESS,
                        help="niceness of the attacker processes")
    args = parser.parse_args()
    kinds = [kind for kind in args.attacks.split(",") if kind]
    unknown = set(kinds) - set(ATTACKS)
    if unknown:
        parser.error(f"unknown attacks: {', '.join(sorted(unknown))}")

    results = []
    for number in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory() as logs, scratch_database(migrated=False) as url:
            # the API migrates and makes its keys itself, as in production
            result = asyncio.run(run_once(url, args.quiet, args.attack, args.after, Path(logs), kinds,
                                          args.attacker_nice))
        report(number, result)
        results.append(result)
        sys.stdout.flush()
    summary(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
