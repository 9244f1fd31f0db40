"""The hub's requests in the operator's access log, as the API's: an accepted upgrade (101), a
refused one, a plain request; the client's address as the trusted proxy passed it, and never the
query string that carries a token."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
import websockets

from tests.support.stack import start_replica
from tests.wshub.support import HubUser

PROXIED = "203.0.113.9"


@pytest.fixture
def hub_process(database_url: str, tmp_path: Path):
    replica = start_replica("hub", database_url, "https://vault.test", tmp_path, extra_env={"HUB_WORKERS": "1"})
    try:
        yield replica
    finally:
        replica.process.stop()


async def test_each_hub_request_leaves_a_line(hub_process, make_user) -> None:
    user: HubUser = await make_user()
    base = f"ws://127.0.0.1:{hub_process.port}"
    token = user.token()
    async with websockets.connect(f"{base}/notifications/hub?access_token={token}",
                                  additional_headers={"X-Real-IP": PROXIED}):
        pass
    with pytest.raises(websockets.InvalidStatus):
        async with websockets.connect(f"{base}/notifications/hub?access_token=forged"):
            pass
    httpx.get(f"{hub_process.url}/alive")
    hub_process.process.stop()
    log = hub_process.process.log.read_text()

    access = re.findall(r'INFO pgwarden\.access: (\S+) "(\w+) (\S+)" (\d{3}) (\d+\.\d)ms$', log, re.M)
    lines = [line[:4] for line in access]
    assert (PROXIED, "GET", "/notifications/hub", "101") in lines
    assert ("127.0.0.1", "GET", "/notifications/hub", "401") in lines
    assert ("127.0.0.1", "GET", "/alive", "200") in lines
    assert token not in log and "forged" not in log
