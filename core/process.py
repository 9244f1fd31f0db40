"""What every pgwarden process sets up: its logging, and its tie to the process that started it."""

from __future__ import annotations

import ctypes
import logging
import signal

__all__ = ["configure_logging", "exit_with_parent"]

_PR_SET_PDEATHSIG = 1


def exit_with_parent() -> None:
    """In a child: a SIGTERM when its parent dies, so no part outlives a killed parent."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: children may outlive a killed parent
        pass


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in ("alembic.runtime.plugins",):
        logging.getLogger(chatty).setLevel(logging.WARNING)
