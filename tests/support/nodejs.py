"""Where the official JavaScript clients live (tests/e2e/js, pinned by its package-lock.json)
and the environment they run in."""

from __future__ import annotations

from pathlib import Path

from tests.support.tools import require, require_tool

__all__ = ["JS", "node", "node_env", "package"]

JS = Path(__file__).resolve().parents[1] / "e2e" / "js"


def node() -> str:
    return require_tool("node")


def package(name: str) -> Path:
    """The installed npm package `name` (fails in CI, skips elsewhere, when absent)."""
    path = JS / "node_modules" / name
    require(path / "package.json", f"npm package {name} is not installed in {JS}")
    return path


def node_env(ca_cert: Path) -> dict[str, str]:
    """Node trusts the test CA on top of its own roots (the clients verify TLS as usual)."""
    return {"NODE_EXTRA_CA_CERTS": str(ca_cert), "NODE_NO_WARNINGS": "1"}
