"""Many SignalR-over-WebSocket clients in a process of their own (bench/wsclients.c, built with
the system's C compiler on first use): the hub benchmarks' clients must read far more messages
per second than the server under test writes, or they measure the clients.
"""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ClientProcess", "Received", "build"]

_SOURCE = Path(__file__).with_name("wsclients.c")


def build() -> Path:
    """Compile wsclients.c (once per source version) and return the program's path."""
    target = Path(tempfile.gettempdir()) / f"pgwarden-wsclients-{int(_SOURCE.stat().st_mtime)}"
    if not target.exists():
        subprocess.run(["cc", "-O2", "-o", str(target), str(_SOURCE)], check=True)
    return target


@dataclass
class Received:
    """What one client process saw: message counts over time, and its probes' latencies."""

    #: (time, messages received so far), every 50 ms
    counts: list[tuple[float, int]] = field(default_factory=list)
    #: (publication time, ms from it to arrival), for every message a probe received
    latencies: list[tuple[float, float]] = field(default_factory=list)
    closed_by_server: int = 0


class ClientProcess:
    """One wsclients process opening a connection per request path, ``at_once`` at a time; one
    connection in ``probe_every`` notes each message's latency."""

    def __init__(self, port: int, paths: list[str], at_once: int = 100, probe_every: int = 20) -> None:
        self._folder = tempfile.TemporaryDirectory()
        folder = Path(self._folder.name)
        (folder / "paths").write_text("\n".join(paths) + "\n")
        self._out = folder / "out"
        self.process = subprocess.Popen(
            [str(build()), str(port), str(folder / "paths"), str(self._out), str(at_once), str(probe_every)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.failed = 0

    async def ready(self) -> float:
        """Seconds it took until every connection was through its handshake (or had failed)."""
        assert self.process.stdout is not None
        while True:
            line = (await asyncio.to_thread(self.process.stdout.readline)).decode().split()
            if not line:
                raise RuntimeError("the client process ended before its connections were open")
            if line[0] == "failed":
                self.failed = int(line[1])
            elif line[0] == "ready":
                return float(line[1])

    def stop(self) -> Received:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(60)
        received = Received()
        for line in self._out.read_text().splitlines():
            kind, *values = line.split()
            if kind == "C":
                received.counts.append((float(values[0]), int(values[1])))
            elif kind == "L":
                received.latencies.append((float(values[0]), float(values[1])))
            elif kind == "X":
                received.closed_by_server = int(values[0])
        self._folder.cleanup()
        return received

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._folder.cleanup()
