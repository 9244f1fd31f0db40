"""What the hub tests share: a hub running in the test's event loop, users with tokens, and a
raw SignalR client on the `websockets` library that decodes frames independently of wshub."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
import msgpack
import websockets
from sanic import Sanic

from core.access import access_claims
from core.config import Config
from core.keystore import load_signing_key
from core.tokens import TokenIssuer
from tests.support.serve import ServedApp, serve
from wshub.app import HubTuning, create_app
from wshub.ingress import IngressTuning

__all__ = ["FAST", "HubClient", "RunningHub", "HubUser", "create_user", "decode_frames", "eventually", "hub_config",
           "issuer_for", "start_hub", "TcpProxy"]

FAST = HubTuning(
    ping_interval=60.0,
    # a probe answered within 2 s even on a busy machine: only a dead link fails it
    ingress=IngressTuning(probe_interval=0.3, probe_timeout=2.0, open_timeout=5.0, gap_margin=timedelta(seconds=2),
                          backoff_initial=0.05, backoff_max=0.5),
    shutdown_grace=1.0,
)


async def eventually(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Wait until the condition holds; the timeout only bounds a test that would hang."""
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"never happened: {what}") from None


def hub_config(**overrides: Any) -> Config:
    values = {"domain": "https://vault.test", "hub_handshake_timeout": 15}
    values.update(overrides)
    return Config(**values)


@dataclass
class RunningHub:
    served: ServedApp
    config: Config

    @property
    def app(self) -> Sanic:
        return self.served.app

    @property
    def port(self) -> int:
        return self.served.port

    @property
    def base(self) -> str:
        return f"127.0.0.1:{self.port}"

    def metric(self, name: str, **labels: str) -> float:
        """The current value of one of the hub's Prometheus samples (0 before its first count)."""
        return self.app.ctx.metrics.registry.get_sample_value(name, labels) or 0.0

    def ws_url(self, path: str = "/notifications/hub", **query: str) -> str:
        params = "&".join(f"{k}={v}" for k, v in query.items())
        return f"ws://{self.base}{path}" + (f"?{params}" if params else "")

    async def stop(self) -> None:
        await self.served.stop()


async def start_hub(database_url: str, config: Config | None = None, tuning: HubTuning = FAST) -> RunningHub:
    config = config or hub_config()
    return RunningHub(await serve(create_app(config, database_url, tuning=tuning)), config)


@dataclass
class HubUser:
    id: str
    issuer: TokenIssuer
    security_stamp: str

    def token(self, device: str | None = None, **claims: Any) -> str:
        user = {"id": self.id, "email": f"{self.id}@example.com", "email_verified": True, "name": "Test",
                "security_stamp": self.security_stamp}
        return self.issuer.issue({**access_claims(user, device or str(uuid.uuid4()), "web"), **claims})


async def issuer_for(db: asyncpg.Connection, config: Config) -> TokenIssuer:
    """An issuer with the database's current signing key, as the API has it."""
    return TokenIssuer(await load_signing_key(db, None), config.token_issuer, 3600)


async def create_user(db: asyncpg.Connection, issuer: TokenIssuer) -> HubUser:
    async with db.transaction():
        row = await db.fetchrow(
            "INSERT INTO users (email, password_hash, key) VALUES ($1, 'x', 'k') RETURNING id::text, security_stamp::text",
            f"{uuid.uuid4()}@example.com")
        # untouched for an hour: only what a test does to it counts as a change
        await db.execute(
            "UPDATE user_revisions SET revision_date = now() - interval '1 hour' WHERE user_id = $1::uuid", row["id"])
    return HubUser(row["id"], issuer, row["security_stamp"])


def decode_frames(data: bytes | str, protocol: str) -> list[Any]:
    """SignalR messages in one frame, decoded with msgpack/json directly (not wshub.codec)."""
    if protocol == "json":
        assert isinstance(data, str), "JSON protocol messages travel in text frames"
        parts = data.split("\x1e")
        assert parts[-1] == "", "every JSON message ends with the record separator"
        return [json.loads(part) for part in parts[:-1]]
    assert isinstance(data, bytes), "MessagePack protocol messages travel in binary frames"
    messages, at = [], 0
    while at < len(data):
        length, shift = 0, 0
        while True:
            byte = data[at]
            at += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        messages.append(msgpack.unpackb(data[at:at + length], timestamp=3))
        at += length
    return messages


class HubClient:
    """A raw SignalR client: handshake, then decoded messages as lists (msgpack) or dicts (json)."""

    def __init__(self, ws: websockets.ClientConnection, protocol: str) -> None:
        self.ws = ws
        self.protocol = protocol
        self._pending: list[Any] = []

    @classmethod
    async def connect(cls, url: str, protocol: str = "messagepack", **kwargs: Any) -> HubClient:
        ws = await websockets.connect(url, max_size=None, **kwargs)
        await ws.send(json.dumps({"protocol": protocol, "version": 1}) + "\x1e")
        reply = await asyncio.wait_for(ws.recv(), 10)
        assert reply == "{}\x1e", reply
        return cls(ws, protocol)

    async def message(self, timeout: float = 10.0) -> Any:
        while not self._pending:
            self._pending += decode_frames(await asyncio.wait_for(self.ws.recv(), timeout), self.protocol)
        return self._pending.pop(0)

    async def notification(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next ReceiveMessage argument, skipping pings."""
        while True:
            message = await self.message(timeout)
            if self._type(message) == 1:
                target, arguments = (message[3], message[4]) if self.protocol == "messagepack" else (
                    message["target"], message["arguments"])
                assert target == "ReceiveMessage", target
                assert len(arguments) == 1
                return arguments[0]

    async def nothing(self, within: float = 0.4) -> None:
        """Assert no notification arrives within a short wait (pings are fine)."""
        try:
            argument = await self.notification(within)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected notification: {argument}")

    def _type(self, message: Any) -> int:
        return message[0] if self.protocol == "messagepack" else message["type"]

    async def close(self) -> None:
        await self.ws.close()


class TcpProxy:
    """A TCP relay to PostgreSQL whose links a test can silence, as a dead network would."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._links: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter, asyncio.Event]] = []
        #: While set, a new link carries the client's first message (the startup) and then goes
        #: silent: a server that accepts a login and never answers a query.
        self.stall_after_startup = False
        self.stalled = 0

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def url_for(self, database_url: str) -> str:
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(database_url)
        netloc = parts.netloc.rsplit("@", 1)
        host = f"127.0.0.1:{self.port}"
        # no TLS negotiation, so the startup message is the first thing a client sends
        query = "&".join([*(p for p in parts.query.split("&") if p and not p.startswith(("host=", "sslmode="))),
                          "sslmode=disable"])
        return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host, query=query))

    def silence(self) -> None:
        """Existing links stop carrying bytes, without closing: a half-open connection."""
        for _, _, live in self._links:
            live.clear()
        self._links.clear()

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for client, upstream, _ in self._links:
            client.close()
            upstream.close()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        host, port = self.target
        if host.startswith("/"):  # an embedded server listens on a Unix socket only
            upstream_reader, upstream_writer = await asyncio.open_unix_connection(f"{host}/.s.PGSQL.{port}")
        else:
            upstream_reader, upstream_writer = await asyncio.open_connection(host, port)
        live = asyncio.Event()
        live.set()
        self._links.append((client_writer, upstream_writer, live))
        stall = self.stall_after_startup
        self.stalled += stall
        await asyncio.gather(self._pipe(client_reader, upstream_writer, live, 1 if stall else None),
                             self._pipe(upstream_reader, client_writer, live), return_exceptions=True)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, live: asyncio.Event,
                    chunks: int | None = None) -> None:
        try:
            while data := await reader.read(65536):
                if chunks is not None:
                    if chunks == 0:
                        live.clear()
                    chunks -= 1
                if not live.is_set():
                    return  # swallowed, and the link stays open
                writer.write(data)
                await writer.drain()
        finally:
            if live.is_set():
                writer.close()
