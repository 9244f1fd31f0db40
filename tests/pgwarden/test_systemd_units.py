"""deploy/systemd: the units systemd itself accepts, run the commands the README documents, and
stop `up` the way it stops cleanly (SIGTERM to it alone)."""

from __future__ import annotations

import configparser
import subprocess
from pathlib import Path

from tests.support.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"


def test_systemd_verifies_the_units(tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze")
    installed = []
    for unit in sorted(UNITS.glob("*.service")):
        copy = tmp_path / unit.name  # the checkout stands where the units expect /opt/pgwarden
        copy.write_text(unit.read_text().replace("/opt/pgwarden", str(ROOT)))
        installed.append(str(copy))
    done = subprocess.run([analyze, "verify", *installed], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


def test_the_units_run_up_and_caddy_and_stop_up_alone() -> None:
    units = {}
    for unit in UNITS.glob("*.service"):
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.read_string(unit.read_text())
        units[unit.stem] = parser["Service"]
    assert units["pgwarden"]["ExecStart"] == "/opt/pgwarden/scripts/pgwarden up"
    assert units["pgwarden"]["KillMode"] == "mixed", "SIGTERM to up alone, which stops the rest in order"
    assert units["pgwarden-caddy"]["ExecStart"] == "/opt/pgwarden/scripts/pgwarden caddy"
    jail = (ROOT / "deploy" / "fail2ban" / "jail.d" / "pgwarden.local").read_text()
    assert "_SYSTEMD_UNIT=pgwarden.service" in jail
