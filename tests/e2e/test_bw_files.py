"""The official `bw` CLI with files: attachments and Sends, with two API replicas, with either
file store.

Each replica has a Caddy of its own in front, so a test knows which replica serves what: the
laptop works through the first, the phone and the stranger through the second, which is also
DOMAIN (the signed download URLs point there). Every file goes in through one replica and comes
out through the other, and what the CLI gets back decrypts to the bytes it sent.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from db.events import PushType
from tests.support.bwcli import Bw, BwError, encode
from tests.support.listen import EventListener
from tests.support.processes import free_port
from tests.support.proxy import ProxySettings, start_proxy
from tests.support.s3server import s3_server
from tests.support.stack import Stack
from tests.support.tls import TlsFiles
from vaultapi import housekeeping

pytestmark = pytest.mark.external

EMAIL = "dana@example.com"
PASSWORD = "correct horse battery staple"


@dataclass
class Deployment:
    #: the public URL in front of each API replica; the second is DOMAIN
    urls: list[str]
    stack: Stack


@pytest.fixture(scope="module", params=["postgresql", "s3"])
def deployment(request: pytest.FixtureRequest, database_url: str, certs: TlsFiles, logs: Path) -> Iterator[Deployment]:
    logs = logs / request.param
    ports = [(free_port(), free_port()) for _ in range(2)]
    with s3_server(logs / "moto.log") as s3:
        # every client here is 127.0.0.1, and the module logs in eight times and opens Sends with
        # passwords: room for them all within the login limits' refill
        env = {"LOGIN_RATELIMIT_MAX_BURST": "100"}
        if request.param == "s3":
            env |= s3.settings("pgwarden-e2e")
            s3.create_bucket("pgwarden-e2e")
        stack = Stack(database_url, f"https://localhost:{ports[1][1]}", logs, api_env=env).start(apis=2, hubs=1)
        proxies = []
        try:
            urls = []
            for index, replica in enumerate(stack.apis):
                settings = ProxySettings("localhost", *ports[index], certs, api=(replica.address,),
                                         hub=(stack.hubs[0].address,))
                proxies.append(start_proxy("caddy", settings, logs / f"caddy-{index + 1}"))
                urls.append(settings.url)
            created = subprocess.run(
                [sys.executable, "-m", "pgwarden.cli", "user", "create", "--email", EMAIL, "--password-stdin"],
                env={"DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"},
                input=PASSWORD, capture_output=True, text=True, timeout=120)
            if created.returncode != 0 and "exists" not in created.stdout + created.stderr:
                raise AssertionError(created.stdout + created.stderr)
            yield Deployment(urls, stack)
        finally:
            for proxy in proxies:
                proxy.stop()
            stack.stop()


async def test_bw_attachments_upload_through_one_replica_and_download_through_the_other(
        deployment: Deployment, certs: TlsFiles, logs: Path, tmp_path: Path, events: EventListener,
        db: asyncpg.Connection) -> None:
    laptop = Bw(tmp_path / "laptop", certs)
    await laptop.login(deployment.urls[0], EMAIL, PASSWORD)
    device = laptop.device_identifier()
    template = await laptop.json("get", "template", "item")
    note = {**template, "type": 2, "name": "Scans", "notes": None, "login": None, "secureNote": {"type": 0}}
    item = await laptop.json("create", "item", encode(note))
    assert (await events.next()).type == PushType.SYNC_CIPHER_CREATE

    original = os.urandom(2 * 1024 * 1024 + 321)
    source = tmp_path / "passport.pdf"
    source.write_bytes(original)
    with_file = await laptop.json("create", "attachment", "--file", str(source), "--itemid", item["id"])
    [attachment] = with_file["attachments"]
    assert attachment["fileName"] == "passport.pdf"
    # stored encrypted: as many bytes as the client's encryption makes, none of them the original's
    row = await db.fetchrow("SELECT size, uploaded, file_name FROM attachments WHERE id = $1", attachment["id"])
    assert row["uploaded"] and row["size"] > len(original) and "passport" not in row["file_name"]
    for _ in range(2):  # announced, then uploaded
        event = await events.next()
        assert (event.type, event.item_id, event.device_identifier) == (PushType.SYNC_CIPHER_UPDATE, item["id"],
                                                                          device)

    phone = Bw(tmp_path / "phone", certs)
    await phone.login(deployment.urls[1], EMAIL, PASSWORD)
    target = tmp_path / "downloaded.pdf"
    await phone.run("get", "attachment", attachment["id"], "--itemid", item["id"], "--output", str(target))
    assert target.read_bytes() == original

    await phone.run("delete", "attachment", attachment["id"], "--itemid", item["id"])
    assert await db.fetchval("SELECT count(*) FROM attachments") == 0
    event = await events.next()
    assert (event.type, event.item_id) == (PushType.SYNC_CIPHER_UPDATE, item["id"])
    assert (await phone.json("get", "item", item["id"])).get("attachments") in (None, [])


def through(url: str, proxy_url: str) -> str:
    """A Send link as if it had been shared through another proxy."""
    return proxy_url + url[url.index("/#/send/"):]


async def test_bw_sends_created_through_one_replica_and_received_through_the_other(
        deployment: Deployment, certs: TlsFiles, logs: Path, tmp_path: Path, events: EventListener,
        db: asyncpg.Connection) -> None:
    urls = deployment.urls
    laptop = Bw(tmp_path / "laptop", certs)
    await laptop.login(urls[0], EMAIL, PASSWORD)
    device = laptop.device_identifier()
    await laptop.run("sync")

    text = await laptop.json("send", "-n", "Wifi", "--password", "open sesame", "-a", "3", "--fullObject",
                             "the wifi password is hunter2")
    assert (text["name"], text["type"], text["passwordSet"]) == ("Wifi", 0, True)
    event = await events.next()
    assert (event.type, event.item_id, event.device_identifier) == (PushType.SYNC_SEND_CREATE, text["id"], device)
    original = os.urandom(1024 * 1024 + 77)
    source = tmp_path / "contract.pdf"
    source.write_bytes(original)
    file = await laptop.json("send", "-f", str(source), "--fullObject")
    assert file["type"] == 1 and file["file"]["fileName"] == "contract.pdf"
    # created, then updated when its file is in
    seen = [(e.type, e.item_id, e.device_identifier) for e in await events.exactly(2)]
    assert seen == [(PushType.SYNC_SEND_CREATE, file["id"], device),
                    (PushType.SYNC_SEND_UPDATE, file["id"], device)]
    assert await db.fetchval("SELECT file_uploaded FROM sends WHERE id = $1", file["id"]) is True

    # (the module's database also holds the Sends of the other store's run)
    listed = {s["id"]: s["name"] for s in await laptop.json("send", "list")}
    assert (listed[text["id"]], listed[file["id"]]) == ("Wifi", "contract.pdf")
    edited = await laptop.json("send", "edit", encode({**text, "name": "Home wifi"}))
    assert edited["name"] == "Home wifi"
    event = await events.next()
    assert (event.type, event.item_id, event.device_identifier) == (PushType.SYNC_SEND_UPDATE, text["id"], device)

    # whoever has the links comes through the other replica
    stranger = Bw(tmp_path / "stranger", certs)
    await stranger.run("config", "server", urls[1])
    with pytest.raises(BwError):
        await stranger.run("send", "receive", through(text["accessUrl"], urls[1]), "--password", "wrong")
    received = await stranger.run("send", "receive", through(text["accessUrl"], urls[1]),
                                  "--password", "open sesame")
    assert received.strip() == "the wifi password is hunter2"
    target = tmp_path / "received.pdf"
    await stranger.run("send", "receive", through(file["accessUrl"], urls[1]), "--output", str(target))
    assert target.read_bytes() == original
    assert await db.fetchval("SELECT access_count FROM sends WHERE id = $1", text["id"]) == 1

    phone = Bw(tmp_path / "phone", certs)
    await phone.login(urls[1], EMAIL, PASSWORD)
    file_key = await db.fetchval("SELECT file_key FROM sends WHERE id = $1", file["id"])
    # the replicas' sweep, which removes released files, skips its rounds while this is held
    await db.execute("SELECT pg_advisory_lock($1)", housekeeping.LOCK)
    try:
        await phone.run("send", "delete", file["id"])
        assert await db.fetchval("SELECT count(*) FROM sends WHERE id = $1", file["id"]) == 0
        assert await db.fetchval("SELECT count(*) FROM released_files WHERE key = $1", file_key) == 1
    finally:
        await db.execute("SELECT pg_advisory_unlock($1)", housekeeping.LOCK)
    listed = {s["id"]: s["name"] for s in await phone.json("send", "list")}
    assert listed.get(text["id"]) == "Home wifi" and file["id"] not in listed
