"""`pgwarden up`: the whole stack on one machine.

Starts (or reuses) the database, migrates it, then runs the API and the hub as child processes,
restarting one that dies with a growing backoff. SIGINT or SIGTERM stops the children, then
the embedded database, and returns.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, replace

from core.config import Config, redact_dsn
from core.process import exit_with_parent

__all__ = ["run"]

log = logging.getLogger("pgwarden.up")

FALLBACK_API_PORT = 8080
STOP_GRACE = 10.0  # seconds a child has to exit on SIGTERM before it is killed
STABLE_AFTER = 60.0  # a child that ran this long restarts from the shortest backoff again
MAX_BACKOFF = 30.0


@dataclass
class Child:
    name: str
    command: str
    process: asyncio.subprocess.Process | None = None
    backoff: float = 1.0


def run(config: Config) -> int:
    config = _bindable(config)
    if config is None:
        return 2
    # Until the children run, SIGTERM interrupts startup as Ctrl-C does, so whatever was
    # started (the embedded database) is stopped on the way out.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        _run(config)
    except KeyboardInterrupt:
        pass
    log.info("stopped")
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _run(config: Config) -> None:
    from core.database import opened, prepare

    with opened(config) as url:
        try:
            log.info("database: %s", redact_dsn(url))
            prepare(url, config.signing_key_secret(), unlock=True)
            _announce(config)
            children = [Child("api", "api")]
            if config.websocket_enabled:
                children.append(Child("hub", "hub"))
            env = {**os.environ, "DATABASE_URL": url, "API_PORT": str(config.api_port)}
            asyncio.run(_supervise(children, env))
        finally:
            # Stopping is under way: a second signal must not cut the database's shutdown short.
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, signal.SIG_IGN)
            if not config.database_url:
                log.info("stopping the embedded database")


def _bindable(config: Config) -> Config | None:
    """The config with an API port we may bind: 80 needs privileges a normal user lacks."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((config.api_address, config.api_port))
        return config
    except PermissionError:
        if "API_PORT" in os.environ:
            log.error(
                "API_PORT=%d needs root or CAP_NET_BIND_SERVICE; choose a port above 1023",
                config.api_port,
            )
            return None
        log.warning(
            "port %d needs root or CAP_NET_BIND_SERVICE; serving the API on %d instead (set API_PORT to choose)",
            config.api_port,
            FALLBACK_API_PORT,
        )
        return replace(config, api_port=FALLBACK_API_PORT)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            log.error("%s:%d is already in use; set API_PORT to another port", config.api_address, config.api_port)
            return None
        raise


def _announce(config: Config) -> None:
    host = "localhost" if config.api_address in {"0.0.0.0", "::"} else config.api_address
    lines = [
        "pgwarden is starting",
        f"  REST API:           http://{host}:{config.api_port}",
    ]
    if config.websocket_enabled:
        lines.append(f"  notifications hub:  ws://{host}:{config.websocket_port}/notifications/hub")
    else:
        lines.append("  notifications hub:  off (WEBSOCKET_ENABLED=false)")
    if not config.database_url:
        from db.embedded import data_folder

        lines.append(f"  database:           embedded PostgreSQL in {data_folder(config.data_folder) / 'postgres'}")
    if "DOMAIN" in os.environ:
        lines += ["In a Bitwarden client choose 'self-hosted' and enter the server URL", f"  {config.domain}"]
    else:
        lines += ["Set DOMAIN to the https:// URL of your proxy: clients enter it as the server URL."]
    lines += [
        "Clients require https: run `pgwarden caddy` with the same settings (README, HTTPS on one",
        "machine), or put another TLS reverse proxy from deploy/ in front.",
        "Press Ctrl-C to stop.",
    ]
    print("\n".join(lines), file=sys.stderr, flush=True)


async def _supervise(children: list[Child], env: dict[str, str]) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)

    watchers = [asyncio.create_task(_keep_running(child, env, stopping)) for child in children]
    await stopping.wait()
    log.info("stopping")
    await asyncio.gather(*(_stop(child) for child in children))
    for watcher in watchers:
        watcher.cancel()
    await asyncio.gather(*watchers, return_exceptions=True)


async def _keep_running(child: Child, env: dict[str, str], stopping: asyncio.Event) -> None:
    while not stopping.is_set():
        started = time.monotonic()
        # Its own session: Ctrl-C in a terminal reaches the supervisor alone, which then
        # stops each child once (a child signalled twice cuts its own shutdown short).
        child.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pgwarden.cli", child.command, env=env,
            start_new_session=True, preexec_fn=exit_with_parent,
        )
        log.info("%s running (pid %d)", child.name, child.process.pid)
        code = await child.process.wait()
        if stopping.is_set():
            return
        if time.monotonic() - started >= STABLE_AFTER:
            child.backoff = 1.0
        log.error("%s exited with code %s; restarting in %.0f s", child.name, code, child.backoff)
        try:
            await asyncio.wait_for(stopping.wait(), child.backoff)
        except TimeoutError:
            pass
        child.backoff = min(child.backoff * 2, MAX_BACKOFF)


async def _stop(child: Child) -> None:
    process = child.process
    if process is None or process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), STOP_GRACE)
    except TimeoutError:
        log.warning("%s did not stop within %.0f s; killing it", child.name, STOP_GRACE)
        process.kill()
        await process.wait()
