"""A large sync is made in slices, and other requests are served between them; a large import
is read in a process of its own.

The API runs in the test's own event loop. With body_limits.LOOP_SLICE at zero every step of a
big job is a slice of its own and hands the loop back, so the tests count the slices and see an
/alive answered while the job is still slicing: an order of events, not a clock. How long the
other requests wait in practice is measured by bench/api_stalls.py.
"""

from __future__ import annotations

import asyncio
import gc
import json
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import psutil
import pytest
from sanic.response import json_dumps

from core.config import Config
from db.events import PushType
from tests.support.bwclient import BitwardenClient
from tests.support.serve import serve
from tests.vaultapi.conftest import user_id_of
from vaultapi import body_limits, import_worker
from vaultapi.app import create_app

ITEMS = 2000
NOTES = "2.QUFB|" + "Q" * 1000 + "|QUFB"


class Timeline:
    """What happened, in order: "slice" each time a big job paced itself, "turn" when another task
    ran (several in a row count as one), and what the test adds."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.sliced = asyncio.Event()

    def add(self, event: str) -> None:
        if event == "turn" and self.events[-1:] == ["turn"]:
            return
        self.events.append(event)
        if event == "slice":
            self.sliced.set()

    def handed_round(self) -> int:
        """Slices after which another task ran (a turn, an answer) before the job went on."""
        return sum(1 for event, following in zip(self.events, self.events[1:])
                   if event == "slice" and following != "slice")

    def after(self, event: str) -> list[str]:
        return self.events[self.events.index(event) + 1:]


@pytest.fixture
def timeline(monkeypatch: pytest.MonkeyPatch) -> Timeline:
    """Every pace of a big job is logged, and is due to hand the loop back."""
    log = Timeline()
    monkeypatch.setattr(body_limits, "LOOP_SLICE", 0.0)
    pace = body_limits.Pacer.pace

    async def logged(self: body_limits.Pacer) -> None:
        log.add("slice")
        await pace(self)

    monkeypatch.setattr(body_limits.Pacer, "pace", logged)
    return log


async def alive_during(client: BitwardenClient, log: Timeline, job: Callable[[], Awaitable[Any]]) -> Any:
    """Run the job, with another task logging its turns; once the job has paced itself, ask
    /alive. The job's result."""
    done = False

    async def other() -> None:
        while not done:
            await asyncio.sleep(0)
            log.add("turn")

    turning = asyncio.ensure_future(other())
    running = asyncio.ensure_future(job())
    sliced = asyncio.ensure_future(log.sliced.wait())
    try:
        await asyncio.wait({running, sliced}, return_when=asyncio.FIRST_COMPLETED)
        assert log.sliced.is_set(), "the job ended without pacing itself once"
        reply = await client.http.get("/alive")
        assert reply.status_code == 200
        log.add("alive")
        return await running
    finally:
        sliced.cancel()
        done = True
        await turning


async def test_sync_of_a_large_vault_is_made_in_slices_with_others_served_between(
    alice: BitwardenClient, db, timeline: Timeline
) -> None:
    me = await user_id_of(alice)
    item = {**alice.login_item("big"), "notes": NOTES}
    data = {key: item[key] for key in ("name", "notes", "fields", "passwordHistory", "login")}
    await db.execute("INSERT INTO ciphers (user_id, type, data) SELECT $1, 1, $2::jsonb FROM generate_series(1, $3)",
                     me, json.dumps(data), ITEMS)

    async def fetch() -> tuple[Any, bytes]:
        async with alice.http.stream("GET", "/api/sync", headers=alice.auth_headers) as reply:
            return reply, b"".join([piece async for piece in reply.aiter_raw()])

    reply, content = await alive_during(alice, timeline, fetch)
    assert reply.status_code == 200 and reply.headers["transfer-encoding"] == "chunked"
    sync = json.loads(content)
    assert len(sync["ciphers"]) == ITEMS
    # byte for byte what one call of the response encoder makes of it
    assert content == json_dumps(sync).encode()
    # each item its own slice with the loop handed round after it, and the sync still going
    # when /alive had its answer
    assert timeline.handed_round() >= ITEMS, timeline.handed_round()
    assert "slice" in timeline.after("alive"), "/alive waited for the whole sync"


async def test_item_list_of_a_large_vault_is_made_in_slices(alice: BitwardenClient, db, timeline: Timeline) -> None:
    me = await user_id_of(alice)
    await db.execute("INSERT INTO ciphers (user_id, type, data) SELECT $1, 1, $2::jsonb FROM generate_series(1, $3)",
                     me, json.dumps({"name": alice.encrypt("n"), "login": {}}), ITEMS)
    listed = await alive_during(alice, timeline, lambda: alice.get("/api/ciphers"))
    assert listed.status_code == 200 and len(listed.json()["data"]) == ITEMS
    assert timeline.handed_round() >= ITEMS, timeline.handed_round()
    assert "slice" in timeline.after("alive"), "/alive waited for the whole list"


async def test_large_import_is_read_in_a_process_of_its_own_with_others_served_meanwhile(
    alice: BitwardenClient, db, events
) -> None:
    item = {**alice.login_item("imported"), "notes": NOTES}
    body = {"ciphers": [item] * ITEMS, "folders": [{"name": item["name"]}] * 50,
            "folderRelationships": [{"key": n, "value": n % 50} for n in range(ITEMS)]}
    me = psutil.Process()
    seen: list[tuple[int, bool]] = []  # the reader's niceness; whether it still ran once /alive answered

    def readers() -> list[psutil.Process]:
        found = []
        for child in me.children():
            try:
                if "vaultapi.import_worker" in child.cmdline():
                    found.append(child)
            except psutil.Error:
                pass
        return found

    async def watch() -> None:
        """Once the reader runs at its own priority (it sets it as it starts), ask /alive."""
        while not seen:
            for reader in readers():
                try:
                    niceness = reader.nice()
                except psutil.Error:
                    continue
                if niceness != me.nice():
                    assert (await alice.http.get("/alive")).status_code == 200
                    seen.append((niceness, reader.is_running()))
            await asyncio.sleep(0.002)

    watching = asyncio.ensure_future(watch())
    reply = await alice.post("/api/ciphers/import", body)
    watching.cancel()
    assert reply.status_code == 200, reply.text
    [(niceness, running)] = seen
    assert niceness == min(19, me.nice() + import_worker.NICENESS)
    assert running, "/alive waited for the import to be read"
    assert not readers(), "the reader outlived its import"
    assert await db.fetchval("SELECT count(*) FROM ciphers") == ITEMS
    assert await db.fetchval("SELECT count(DISTINCT folders) FROM ciphers") == 50
    # about 3 MB of rows in 1 MiB statements, one SyncVault
    [event] = await events.exactly(1)
    assert event.type == PushType.SYNC_VAULT


async def test_an_import_whose_reader_does_not_answer_in_time_is_503_and_writes_nothing(
    alice: BitwardenClient, db, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(import_worker, "READ_TIMEOUT", 0.01)
    secret_name = "a name nobody may log"
    reply = await alice.post("/api/ciphers/import", {"ciphers": [alice.login_item(secret_name)], "folders": [],
                                                    "folderRelationships": []})
    assert reply.status_code == 503 and reply.json()["object"] == "error"
    assert await db.fetchval("SELECT count(*) FROM ciphers") == 0
    assert not [child for child in psutil.Process().children() if "vaultapi.import_worker" in child.cmdline()]
    assert "import's reader ended without an answer" in caplog.text and secret_name not in caplog.text


def test_an_import_s_reader_gets_no_secret_of_the_api_s_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # it parses a stranger's JSON: the database URL, the key passphrase and the mail password stay here
    monkeypatch.setenv("DATABASE_URL", "postgresql://pgwarden:hunter2@db/pgwarden")
    monkeypatch.setenv("SMTP_PASSWORD", "hunter2")
    environment = import_worker.child_environment()
    assert "hunter2" not in "".join(environment.values())
    assert environment["PYTHONPATH"]


async def test_an_import_s_reader_that_answers_more_than_it_was_sent_is_cut_off() -> None:
    stream = asyncio.StreamReader()
    stream.feed_data(struct.pack("!cI", b"B", 10_000) + b"x" * 10_000)
    stream.feed_eof()
    with pytest.raises(ValueError):
        await anext(import_worker._frames(stream, 5_000))


async def test_the_api_served_alone_keeps_its_startup_objects_out_of_full_collections(database_url: str) -> None:
    # (as `pgwarden api` serves it; a full collection then walks only what came after)
    gc.unfreeze()
    app = create_app(Config(database_url=database_url, domain="https://vault.test"), freeze_startup=True)
    served = await serve(app)
    try:
        assert gc.get_freeze_count() > 10_000
        assert not any(tracked is app for tracked in gc.get_objects())
    finally:
        await served.stop()
        gc.unfreeze()
