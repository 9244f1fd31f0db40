"""What an operator reads: an access line per request, a failed-login line with the client's
address, and the fail2ban filter of deploy/fail2ban run by fail2ban itself on that output."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support.bwclient import BitwardenClient
from tests.support.stack import start_replica
from tests.support.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]
FILTER = ROOT / "deploy" / "fail2ban" / "filter.d" / "pgwarden.conf"
ATTACKER = "203.0.113.7"


@pytest.fixture
def api_process(database_url: str, tmp_path: Path):
    replica = start_replica("api", database_url, "https://vault.example.com", tmp_path)
    try:
        yield replica
    finally:
        replica.process.stop()


async def test_each_request_and_each_failed_login_leave_a_line(api_process) -> None:
    url = api_process.url
    async with BitwardenClient(url) as client:
        await client.register("logs@example.com", "the right one")
        await client.login()
    async with BitwardenClient(url) as client:
        client.http.headers["X-Real-IP"] = ATTACKER  # as the proxy on loopback passes it
        client.email, client.password, client.iterations = "logs@example.com", "a wrong one", 600_000
        for _ in range(2):
            assert (await client.request_token()).status_code == 400
    httpx.get(f"{url}/api/config?token=secret-in-query", headers={"X-Real-IP": "198.51.100.1"})
    api_process.process.stop()
    log = api_process.process.log.read_text()

    failed = re.findall(r"WARNING pgwarden\.login: failed login from (\S+)$", log, re.M)
    assert failed == [ATTACKER, ATTACKER]
    assert "a wrong one" not in log and "logs@example.com" not in log.split("failed login")[-1]
    access = re.findall(r'INFO pgwarden\.access: (\S+) "(\w+) (\S+)" (\d{3}) (\d+\.\d)ms$', log, re.M)
    assert (ATTACKER, "POST", "/identity/connect/token", "400") in [line[:4] for line in access]
    assert ("198.51.100.1", "GET", "/api/config", "200") in [line[:4] for line in access]
    assert ("127.0.0.1", "GET", "/alive", "200") in [line[:4] for line in access], "no header: the peer's own"
    assert "secret-in-query" not in log


def test_the_fail2ban_filter_matches_the_failed_logins_and_nothing_else(api_process, tmp_path: Path) -> None:
    fail2ban_regex = require_tool("fail2ban-regex")
    url = api_process.url
    for address in (ATTACKER, "2001:db8::9"):
        response = httpx.post(f"{url}/identity/connect/token", headers={"X-Real-IP": address}, data={
            "grant_type": "password", "username": "nobody@example.com", "password": "x", "scope": "api",
            "client_id": "cli", "deviceType": "8", "deviceIdentifier": "d", "deviceName": "linux"})
        assert response.status_code == 400
    httpx.get(f"{url}/alive")
    api_process.process.stop()
    log = api_process.process.log

    result = subprocess.run([fail2ban_regex, "--print-all-matched", str(log), str(FILTER)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^Lines: \d+ lines, 0 ignored, 2 matched", result.stdout, re.M), result.stdout
    matched = re.findall(r"^\|\s+(\d{4}-.*failed login.*)$", result.stdout, re.M)
    assert len(matched) == 2, result.stdout
    summary = subprocess.run([fail2ban_regex, "-v", str(log), str(FILTER)], capture_output=True, text=True,
                             timeout=120).stdout
    assert ATTACKER in summary and "2001:db8::9" in summary, summary
