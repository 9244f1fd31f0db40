"""``pgwarden hub`` on every core: HUB_WORKERS processes serving one port.

Each worker is a whole hub (app.py): its own listening socket bound with SO_REUSEPORT (the kernel
spreads new connections over the workers), its own LISTEN connection, registry and keepalive, so
every worker delivers each event to the clients it holds, with no hand-off between processes. The
per-address and per-user caps count the connections of all workers, in shared memory (tally.py);
the other caps (all connections, anonymous ones) are per worker, each bounding its own memory.

This process only starts the workers and watches them. When one exits, the others are stopped
and this process exits with an error, so whatever runs the hub (``pgwarden up``, Docker) starts
them all again: the shared counts then start from zero, as the connections do. SIGINT or SIGTERM
stops every worker gracefully (each says goodbye to its clients) and returns.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
from multiprocessing.connection import wait
from typing import Any

from core.config import Config
from core.process import configure_logging, exit_with_parent
from wshub.tally import SharedTally

__all__ = ["listening_socket", "run_workers"]

log = logging.getLogger("wshub")

STOP_GRACE = 10.0  # seconds a worker has to say goodbye to its clients before it is killed


def listening_socket(address: str, port: int, *, shared: bool) -> socket.socket:
    """The hub's listening socket; ``shared``: other processes may bind the same port."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if shared:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((address, port))
    sock.set_inheritable(True)
    return sock


def run_workers(config: Config, url: str, count: int) -> int:
    context = multiprocessing.get_context("spawn")  # a fresh interpreter each: no loop crosses a fork
    tally = SharedTally(context)
    workers = [context.Process(target=_worker, args=(config, url, tally), name=f"hub-worker-{n + 1}")
               for n in range(count)]
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers:
            if worker.is_alive():
                worker.terminate()

    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        for worker in workers:
            worker.start()
        log.info("hub running %d workers on port %d", count, config.websocket_port)
        wait([worker.sentinel for worker in workers])
        if not stopping:
            ended = next(worker for worker in workers if not worker.is_alive())
            log.error("%s exited with code %s; stopping the others", ended.name, ended.exitcode)
            stop(signal.SIGTERM, None)
        for worker in workers:
            worker.join(STOP_GRACE)
            if worker.is_alive():
                worker.kill()
                worker.join()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0 if all(worker.exitcode == 0 for worker in workers) or stopping else 1


def _worker(config: Config, url: str, tally: Any) -> None:
    exit_with_parent()
    configure_logging(config.log_level)
    from wshub.app import serve_socket

    serve_socket(config, url, listening_socket(config.websocket_address, config.websocket_port, shared=True),
                 tally=tally)
