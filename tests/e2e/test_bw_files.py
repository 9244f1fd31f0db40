"""The official `bw` CLI with files: attachments and Sends, through Caddy in front of two API
replicas, with either file store.

Each file goes in through one replica and comes out through the other: after the upload the
first replica stops, and Caddy sends everything after to the second. What the CLI downloads
decrypts to the bytes it uploaded.
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
from tests.support.bwcli import Bw, encode
from tests.support.listen import EventListener
from tests.support.processes import free_port
from tests.support.proxy import ProxySettings, start_proxy
from tests.support.s3server import s3_server
from tests.support.stack import Stack
from tests.support.tls import TlsFiles

pytestmark = pytest.mark.external

EMAIL = "dana@example.com"
PASSWORD = "correct horse battery staple"


@dataclass
class Deployment:
    url: str
    stack: Stack


@pytest.fixture(scope="module", params=["postgresql", "s3"])
def deployment(request: pytest.FixtureRequest, database_url: str, certs: TlsFiles, logs: Path) -> Iterator[Deployment]:
    http_port, https_port = free_port(), free_port()
    logs = logs / request.param
    with s3_server(logs / "moto.log") as s3:
        env = {}
        if request.param == "s3":
            env = s3.settings("pgwarden-e2e")
            s3.create_bucket("pgwarden-e2e")
        stack = Stack(database_url, f"https://localhost:{https_port}", logs, api_env=env).start(apis=2, hubs=1)
        settings = ProxySettings("localhost", http_port, https_port, certs,
                                 api=tuple(r.address for r in stack.apis), hub=(stack.hubs[0].address,))
        proxy = start_proxy("caddy", settings, logs / "caddy")
        try:
            created = subprocess.run(
                [sys.executable, "-m", "pgwarden.cli", "user", "create", "--email", EMAIL, "--password-stdin"],
                env={"DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"},
                input=PASSWORD, capture_output=True, text=True, timeout=120)
            if created.returncode != 0 and "exists" not in created.stdout + created.stderr:
                raise AssertionError(created.stdout + created.stderr)
            yield Deployment(settings.url, stack)
        finally:
            proxy.stop()
            stack.stop()


async def test_bw_attachments_upload_through_one_replica_and_download_through_the_other(
        deployment: Deployment, certs: TlsFiles, logs: Path, tmp_path: Path, events: EventListener,
        db: asyncpg.Connection) -> None:
    laptop = Bw(tmp_path / "laptop", certs)
    await laptop.login(deployment.url, EMAIL, PASSWORD)
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
    await phone.login(deployment.url, EMAIL, PASSWORD)
    # the replica that took the upload goes; the other one serves everything from now on (Caddy
    # retries a request the stopped replica refuses, when it has no body to send again)
    deployment.stack.apis[0].process.stop()
    target = tmp_path / "downloaded.pdf"
    await phone.run("get", "attachment", attachment["id"], "--itemid", item["id"], "--output", str(target))
    assert target.read_bytes() == original

    await phone.run("delete", "attachment", attachment["id"], "--itemid", item["id"])
    assert await db.fetchval("SELECT count(*) FROM attachments") == 0
    event = await events.next()
    assert (event.type, event.item_id) == (PushType.SYNC_CIPHER_UPDATE, item["id"])
    assert (await phone.json("get", "item", item["id"])).get("attachments") in (None, [])
