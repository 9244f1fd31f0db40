"""scripts/setup touches only what it owns: it kills nothing, starts no service and leaves the
services of the packages it installs disabled, and never disables one it did not install.

It runs here against stand-ins for the system's package tools, found first on PATH, so the
test changes nothing on the machine: the stand-ins write down how they were called.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# The stand-ins: each records its arguments in calls.log, then does what its name says just
# enough for the script to go on.
STAND_INS = {
    "id": 'echo 0',
    "dpkg-query": '''
case "$1" in
  -W) if grep -qx "$3" "$STATE/installed"; then echo "install ok installed"; else exit 1; fi ;;
  -L) case "$2" in
        nginx-light) echo /lib/systemd/system/nginx.service ;;
        apache2) echo /lib/systemd/system/apache2.service; echo /etc/init.d/apache2 ;;
        haproxy) echo /lib/systemd/system/haproxy.service ;;
        caddy) echo /lib/systemd/system/caddy.service; echo /lib/systemd/system/caddy-api.service ;;
        fail2ban) echo /lib/systemd/system/fail2ban.service ;;
      esac ;;
esac''',
    "apt-get": 'true',
    "update-rc.d": 'true',
    "systemctl": 'true',
    "service": 'true',
    "invoke-rc.d": 'true',
    "pkill": 'true',
    "killall": 'true',
    "npm": 'true',
    "python3": '''
if [ "$1 $2" = "-m venv" ]; then mkdir -p "$3/bin"; cp "$0" "$3/bin/python"; fi''',
}


def fake_system(tmp_path: Path, installed: list[str]) -> tuple[Path, dict[str, str]]:
    checkout = tmp_path / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "setup", checkout / "scripts" / "setup")
    state = tmp_path / "state"
    state.mkdir()
    (state / "installed").write_text("".join(f"{name}\n" for name in installed))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in STAND_INS.items():
        program = bin_dir / name
        program.write_text(f'#!/bin/sh\necho "{name} $*" >> "$STATE/calls.log"\n{body}\n')
        program.chmod(program.stat().st_mode | stat.S_IXUSR)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "STATE": str(state), "HOME": str(tmp_path)}
    return checkout, env


def calls(tmp_path: Path) -> list[str]:
    return (tmp_path / "state" / "calls.log").read_text().splitlines()


def test_setup_as_root_installs_with_starts_refused_and_leaves_new_services_disabled(tmp_path: Path) -> None:
    checkout, env = fake_system(tmp_path, installed=["python3-venv", "chromium", "docker-compose", "haproxy"])
    result = subprocess.run(["bash", "scripts/setup"], cwd=checkout, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    log = calls(tmp_path)

    assert not [line for line in log if line.split()[0] in {"pkill", "killall", "service", "invoke-rc.d"}], log
    assert all(line.startswith("systemctl --root=/ --quiet disable ") for line in log if line.startswith("systemctl"))
    install = next(line for line in log if line.startswith("apt-get install"))
    assert {"caddy", "nginx-light", "apache2", "fail2ban"} <= set(install.split())
    assert "haproxy" not in install.split(), "a package already there is not reinstalled"
    disabled = {line.split()[-1] for line in log if line.startswith("systemctl")}
    assert disabled == {"caddy.service", "nginx.service", "apache2.service", "fail2ban.service"}, log
    assert not [line for line in log if "haproxy" in line and not line.startswith("dpkg-query -W")], \
        "the service of a package installed before is not touched"
    # a service start during the install is refused by policy-rc.d; one exists on Debian images
    # already, or the script writes its own for the install's duration and removes it after
    assert Path("/usr/sbin/policy-rc.d").exists() or "policy-rc.d" in (ROOT / "scripts/setup").read_text()


def test_setup_never_signals_a_process() -> None:
    # `kill` is a shell builtin, out of the stand-ins' reach: read the script itself
    text = (ROOT / "scripts" / "setup").read_text()
    code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    for word in ("kill", " stop", "--now", "restart"):
        assert word not in code, word


def test_setup_as_a_user_lists_missing_packages_and_installs_nothing(tmp_path: Path) -> None:
    checkout, env = fake_system(tmp_path, installed=[])
    (tmp_path / "bin" / "id").write_text('#!/bin/sh\necho 1000\n')
    result = subprocess.run(["bash", "scripts/setup"], cwd=checkout, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "missing Debian packages (install them as root): python3-venv caddy" in result.stderr
    assert not [line for line in calls(tmp_path) if line.startswith(("apt-get", "systemctl"))]
    assert os.path.exists(checkout / ".venv" / "bin" / "python")
