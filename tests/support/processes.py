"""Long-running programs the end-to-end tests start: each logs to its own file and stops cleanly.

Every running process is listed in :data:`RUNNING`, so a failed test can show their logs
(see tests/conftest.py).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

__all__ = ["RUNNING", "ManagedProcess", "free_port", "wait_until"]

#: Processes started and not yet stopped, oldest first.
RUNNING: list[ManagedProcess] = []


def free_port() -> int:
    """A TCP port nothing listens on right now (the kernel's pick)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(ready: Callable[[], bool], what: str, timeout: float = 30.0,
               alive: ManagedProcess | None = None) -> None:
    """Poll `ready` until it holds; raise with `what` (and the log of `alive`) if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if alive is not None and alive.exited():
            raise RuntimeError(f"{alive.name} exited with {alive.process.returncode} before {what}:\n"
                               f"{alive.tail()}")
        if ready():
            return
        time.sleep(0.1)
    tail = f":\n{alive.tail()}" if alive is not None else ""
    raise TimeoutError(f"gave up after {timeout:.0f}s waiting for {what}{tail}")


class ManagedProcess:
    """One child process with its output in `log`; stop() ends it, however it behaves."""

    def __init__(self, name: str, argv: Sequence[str], log: Path,
                 env: Mapping[str, str] | None = None, cwd: Path | None = None, user: str | None = None) -> None:
        self.name = name
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            # Its own process group, so stop() reaches anything it forks.
            self.process = subprocess.Popen(
                list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True,
                user=user, group=user,  # a server that refuses root (PostgreSQL, PgBouncer) runs as user
            )
        RUNNING.append(self)

    def exited(self) -> bool:
        return self.process.poll() is not None

    def tail(self, lines: int = 60) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after `grace` seconds; the exit code."""
        if self in RUNNING:
            RUNNING.remove(self)
        if self.process.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.process.wait()
        return self.process.returncode

    def _signal(self, signum: int) -> None:
        try:
            os.killpg(self.process.pid, signum)
        except ProcessLookupError:
            pass
