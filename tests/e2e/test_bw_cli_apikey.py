"""The official `bw` CLI logs in with the personal API key (BW_CLIENTID, BW_CLIENTSECRET) and
unlocks with the master password, then reads and decrypts the vault; a wrong secret is refused
and leaves the CLI logged out."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.bwcli import Bw, BwError
from tests.support.bwclient import BitwardenClient
from tests.support.processes import free_port
from tests.support.proxy import ProxySettings, start_proxy
from tests.support.stack import Stack
from tests.support.tls import TlsFiles

pytestmark = pytest.mark.external

PASSWORD = "an api key and a password"


@pytest.fixture(scope="module")
def api_url(database_url: str, certs: TlsFiles, logs: Path) -> Iterator[str]:
    """One API and one hub behind the nginx example (the CLI takes only https)."""
    http_port, https_port = free_port(), free_port()
    stack = Stack(database_url, f"https://localhost:{https_port}", logs).start(apis=1, hubs=1)
    settings = ProxySettings("localhost", http_port, https_port, certs,
                             api=(stack.apis[0].address,), hub=(stack.hubs[0].address,))
    proxy = start_proxy("nginx", settings, logs / "nginx")
    try:
        yield settings.url
    finally:
        proxy.stop()
        stack.stop()


async def test_bw_login_with_the_api_key_then_unlock(api_url: str, certs: TlsFiles, tmp_path: Path) -> None:
    email = f"frank-{uuid.uuid4().hex[:8]}@example.com"
    async with BitwardenClient(api_url, verify=certs.client_context()) as web:
        await web.register(email, PASSWORD, name="Frank")
        await web.login()
        assert (await web.post("/api/ciphers", json=web.login_item("Server", password="root-pw"))).status_code == 200
        key = (await web.post("/api/accounts/api-key", json={"masterPasswordHash": web.password_hash()})).json()
        client_id = f"user.{(await web.get('/api/accounts/profile')).json()['id']}"

    wrong = Bw(tmp_path / "wrong", certs)
    await wrong.run("config", "server", api_url)
    wrong.env = {**wrong.env, "BW_CLIENTID": client_id, "BW_CLIENTSECRET": "x" * 30}
    with pytest.raises(BwError) as refused:
        await wrong.run("login", "--apikey")
    assert "client" in (refused.value.stdout + refused.value.stderr).lower(), refused.value
    assert (await wrong.json("status"))["status"] == "unauthenticated"

    bw = Bw(tmp_path / "cli", certs)
    await bw.run("config", "server", api_url)
    bw.env = {**bw.env, "BW_CLIENTID": client_id, "BW_CLIENTSECRET": key["apiKey"]}
    await bw.run("login", "--apikey")
    assert (await bw.json("status"))["status"] == "locked"
    bw.session = (await bw.run("unlock", PASSWORD, "--raw")).strip()
    assert bw.session
    await bw.run("sync")
    items = await bw.json("list", "items")
    assert [(item["name"], item["login"]["password"]) for item in items] == [("Server", "root-pw")]
