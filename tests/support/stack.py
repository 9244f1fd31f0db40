"""`pgwarden api` and `pgwarden hub` as real processes on free loopback ports.

Each replica is the installed command run the way an operator runs it: its settings in the
environment, its output in a log file that a failed test shows (tests/support/processes.py).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.processes import ManagedProcess, free_port, wait_until

__all__ = ["Replica", "Stack", "start_replica"]

#: Run through the interpreter of this venv, whatever the PATH says.
PGWARDEN = [sys.executable, "-m", "pgwarden.cli"]


@dataclass
class Replica:
    kind: str  # "api" or "hub"
    port: int
    process: ManagedProcess

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def start_replica(kind: str, database_url: str, domain: str, logs: Path, index: int = 1,
                  extra_env: dict[str, str] | None = None) -> Replica:
    """One `pgwarden <kind>` process, returned once its /alive answers 200."""
    port = free_port()
    env = {
        "DATABASE_URL": database_url,
        "DOMAIN": domain,
        "LOG_LEVEL": "info",
        "PYTHONUNBUFFERED": "1",
        **(
            {"API_ADDRESS": "127.0.0.1", "API_PORT": str(port)}
            if kind == "api"
            else {"WEBSOCKET_ADDRESS": "127.0.0.1", "WEBSOCKET_PORT": str(port)}
        ),
        **(extra_env or {}),
    }
    name = f"{kind}{index}"
    process = ManagedProcess(name, [*PGWARDEN, kind], logs / f"{name}.log", env=env)
    replica = Replica(kind, port, process)
    try:
        wait_until(lambda: _answers(f"{replica.url}/alive"), f"{name} to answer /alive on {port}",
                   alive=process)
    except BaseException:
        process.stop()
        raise
    return replica


@dataclass
class Stack:
    """API and hub replicas sharing one database and one public URL (the token issuer)."""

    database_url: str
    domain: str
    logs: Path
    apis: list[Replica] = field(default_factory=list)
    hubs: list[Replica] = field(default_factory=list)
    #: more settings for every replica (SMTP_*, ...)
    env: dict[str, str] = field(default_factory=dict)

    def start(self, apis: int = 1, hubs: int = 1) -> Stack:
        try:
            for index in range(1, apis + 1):
                self.apis.append(start_replica("api", self.database_url, self.domain, self.logs, index, self.env))
            for index in range(1, hubs + 1):
                self.hubs.append(start_replica("hub", self.database_url, self.domain, self.logs, index, self.env))
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for replica in [*self.hubs, *self.apis]:
            replica.process.stop()
