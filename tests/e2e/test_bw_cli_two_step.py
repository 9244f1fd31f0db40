"""The official `bw` CLI logging in with a second step, through the nginx example with TLS:
`bw login --method 0 --code <authenticator code>` and `--method 1` with the emailed code, which
a real SMTP server on loopback (aiosmtpd) receives from the API's outbox."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pyotp
import pytest

from tests.support.bwcli import Bw, BwError
from tests.support.bwclient import BitwardenClient
from tests.support.processes import free_port
from tests.support.proxy import ProxySettings, start_proxy
from tests.support.smtp import Inbox, smtp_server
from tests.support.stack import Stack
from tests.support.tls import TlsFiles

pytestmark = pytest.mark.external

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def server(database_url: str, certs: TlsFiles, logs: Path) -> Iterator[tuple[str, str, Inbox]]:
    """(the public URL, one API replica's own URL, the inbox of the SMTP server it mails)."""
    with smtp_server() as (inbox, smtp_port):
        ports = free_port(), free_port()
        stack = Stack(database_url, f"https://localhost:{ports[1]}", logs, env={
            "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp_port), "SMTP_SECURITY": "off",
            "SMTP_FROM": "vault@example.com",
            # every client here is 127.0.0.1: room for the logins of both tests
            "LOGIN_RATELIMIT_MAX_BURST": "100"}).start(apis=1, hubs=1)
        settings = ProxySettings("localhost", *ports, certs,
                                 api=(stack.apis[0].address,), hub=(stack.hubs[0].address,))
        proxy = start_proxy("nginx", settings, logs / "nginx")
        try:
            yield settings.url, stack.apis[0].url, inbox
        finally:
            proxy.stop()
            stack.stop()


async def account(api_url: str, email: str, inbox: Inbox) -> BitwardenClient:
    client = BitwardenClient(api_url)
    await client.register_by_mail(email, PASSWORD, inbox, name="Two Step")
    await client.login()
    return client


async def test_bw_logs_in_with_an_authenticator_code(
    server: tuple[str, str, Inbox], certs: TlsFiles, logs: Path, db: asyncpg.Connection
) -> None:
    url, api_url, inbox = server
    async with await account(api_url, "totp@example.com", inbox) as web:
        got = (await web.post("/api/two-factor/get-authenticator", {"masterPasswordHash": web.password_hash()})).json()
        totp = pyotp.TOTP(got["key"])
        enabled = await web.put("/api/two-factor/authenticator", {
            "key": got["key"], "token": totp.at(time.time() - 30),
            "userVerificationToken": got["userVerificationToken"]})
        assert enabled.status_code == 200, enabled.text
        await web.post("/api/ciphers", web.login_item("Bank"))

    bw = Bw(logs / "bw-totp", certs)
    await bw.run("config", "server", url)
    # without a code a non-interactive login cannot answer the challenge
    with pytest.raises(BwError):
        await bw.run("login", "totp@example.com", PASSWORD, "--raw")
    with pytest.raises(BwError):
        await bw.run("login", "totp@example.com", PASSWORD, "--method", "0", "--code", "000000", "--raw")
    assert await db.fetchval("SELECT count(*) FROM devices d JOIN users u ON u.id = d.user_id"
                             " WHERE u.email = 'totp@example.com'") == 1  # the web client's only

    code = totp.now()
    bw.session = (await bw.run("login", "totp@example.com", PASSWORD, "--method", "0", "--code", code,
                               "--raw")).strip()
    await bw.run("sync")
    assert [item["name"] for item in await bw.json("list", "items")] == ["Bank"]

    # the same code on a second device: refused (used within two minutes)
    other = Bw(logs / "bw-totp-2", certs)
    await other.run("config", "server", url)
    with pytest.raises(BwError):
        await other.run("login", "totp@example.com", PASSWORD, "--method", "0", "--code", code, "--raw")


async def test_bw_logs_in_with_an_emailed_code(
    server: tuple[str, str, Inbox], certs: TlsFiles, logs: Path
) -> None:
    url, api_url, inbox = server
    async with await account(api_url, "mailed@example.com", inbox) as web:
        got = (await web.post("/api/two-factor/get-email", {"masterPasswordHash": web.password_hash()})).json()
        assert (await web.post("/api/two-factor/send-email", {
            "email": "mailed@example.com", "userVerificationToken": got["userVerificationToken"]})).status_code == 200
        setup_mail = (await inbox.wait("mailed@example.com", 2))[1]
        enabled = await web.put("/api/two-factor/email", {
            "email": "mailed@example.com", "token": setup_mail.code(),
            "userVerificationToken": got["userVerificationToken"]})
        assert enabled.status_code == 200, enabled.text
        # what the CLI's login page asks for when the email provider is chosen
        sent = await web.http.post("/api/two-factor/send-email-login", json={
            "email": "mailed@example.com", "masterPasswordHash": web.password_hash()})
        assert sent.status_code == 200, sent.text
    login_mail = (await inbox.wait("mailed@example.com", 3))[2]
    assert login_mail.subject == "Your two-step login code"

    bw = Bw(logs / "bw-mailed", certs)
    await bw.run("config", "server", url)
    bw.session = (await bw.run("login", "mailed@example.com", PASSWORD, "--method", "1", "--code",
                               login_mail.code(), "--raw")).strip()
    await bw.run("sync")
    assert await bw.json("list", "items") == []
