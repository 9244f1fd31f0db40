"""Guards for tests that need a program or file the test setup installs.

Outside CI a missing tool skips the test with the step that installs it; under CI=true the
same absence fails the test, so an end-to-end test can never pass by not running.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import NoReturn

import pytest

__all__ = ["INSTALL_HINT", "in_ci", "missing", "require", "require_tool"]

INSTALL_HINT = "run ./scripts/setup (Debian packages, then npm ci --prefix tests/e2e/js)"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def missing(why: str) -> NoReturn:
    """Fail under CI, skip elsewhere, saying what is missing and how to install it."""
    message = f"{why}; {INSTALL_HINT}"
    if in_ci():
        pytest.fail(f"required in CI: {message}", pytrace=False)
    pytest.skip(message)


def require_tool(name: str) -> str:
    """The absolute path of the program `name` on PATH (or an absolute path that exists)."""
    found = shutil.which(name)
    if found is None:
        missing(f"{name} is not installed")
    return found


def require(what: Path | str | bool, why: str) -> None:
    """Go on when `what` (a path that must exist, or a condition) holds; else missing(why)."""
    ok = Path(what).exists() if isinstance(what, (str, Path)) else bool(what)
    if not ok:
        missing(why)
