"""The official SignalR client, configured as the Bitwarden clients configure theirs, in a Node
process (tests/e2e/js/signalr-listen.mjs; signalr-anonymous.mjs for the anonymous hub) or in
headless Chromium (browser-listen.mjs).

Both print one JSON line per event; :class:`HubListener` collects them for a test to await.
"""

from __future__ import annotations

import asyncio
import os
import json
from pathlib import Path
from typing import Any

from tests.support.nodejs import JS, node, node_env, package
from tests.support.tls import TlsFiles
from tests.support.tools import require_tool

__all__ = ["HubListener"]


class HubListener:
    """A running listener: send it a token, then await what its hub connection receives."""

    def __init__(self, process: asyncio.subprocess.Process, name: str, log: Path) -> None:
        self.process = process
        self.name = name
        self.log = log
        self.messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.states: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        #: When the last message next() returned arrived: epoch milliseconds, clock of this machine.
        self.received_at = 0.0
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def node(cls, server_url: str, certs: TlsFiles, logs: Path,
                   name: str = "node-signalr") -> HubListener:
        package("@microsoft/signalr")
        package("@microsoft/signalr-protocol-msgpack")
        return await cls._spawn(name, [node(), str(JS / "signalr-listen.mjs"), server_url], certs, logs)

    @classmethod
    async def anonymous(cls, server_url: str, certs: TlsFiles, logs: Path,
                        name: str = "node-signalr-anonymous") -> HubListener:
        """A device waiting for the answer to its auth request (connect with the request's id)."""
        package("@microsoft/signalr")
        package("@microsoft/signalr-protocol-msgpack")
        return await cls._spawn(name, [node(), str(JS / "signalr-anonymous.mjs"), server_url], certs, logs)

    @classmethod
    async def browser(cls, server_url: str, certs: TlsFiles, logs: Path) -> HubListener:
        package("playwright-core")
        chromium = require_tool("chromium")
        argv = [node(), str(JS / "browser-listen.mjs"), server_url, certs.spki_sha256,
                str(logs / "chromium-profile"), str(logs / "browser-received.png")]
        return await cls._spawn("chromium", argv, certs, logs, {"CHROMIUM": chromium})

    @classmethod
    async def _spawn(cls, name: str, argv: list[str], certs: TlsFiles, logs: Path,
                     env: dict[str, str] | None = None) -> HubListener:
        logs.mkdir(parents=True, exist_ok=True)
        log = logs / f"{name}.log"
        with log.open("ab") as stderr:
            process = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=stderr,
                env={**os.environ, **node_env(certs.ca_cert), **(env or {})},
            )
        return cls(process, name, log)

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            event = json.loads(raw)
            (self.messages if event["event"] == "message" else self.states).put_nowait(event)
        self.states.put_nowait({"event": "exited", "error": self.log.read_text(errors="replace")[-3000:]})

    async def _send(self, command: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command).encode() + b"\n")
        await self.process.stdin.drain()

    async def connect(self, token: str, timeout: float = 60.0) -> None:
        """Start the hub connection with `token` (an access token; on the anonymous hub, the auth
        request id); return once the SignalR handshake is done."""
        await self._send({"token": token})
        state = await asyncio.wait_for(self.states.get(), timeout)
        if state["event"] != "connected":
            raise AssertionError(f"{self.name} did not connect: {state}")

    async def next(self, timeout: float = 10.0) -> dict[str, Any]:
        """The argument of the next message (ReceiveMessage; on the anonymous hub,
        AuthRequestResponseRecieved), as the client decoded it."""
        event = await asyncio.wait_for(self.messages.get(), timeout)
        self.received_at = event["receivedAt"]
        return dict(event["arguments"][0])

    async def nothing(self, timeout: float = 1.0) -> None:
        """Assert no message arrives within `timeout` seconds."""
        try:
            event = await asyncio.wait_for(self.messages.get(), timeout)
        except asyncio.TimeoutError:
            return
        raise AssertionError(f"{self.name} received an unexpected message: {event}")

    async def close(self) -> None:
        if self.process.returncode is None:
            try:
                await self._send({"stop": True})
                await asyncio.wait_for(self.process.wait(), 15)
            except (asyncio.TimeoutError, ConnectionError):
                self.process.kill()
                await self.process.wait()
        self._reader.cancel()
