"""A lost LISTEN connection: detected, re-established, and the gap closed with SyncVault nudges."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from db import migrate
from tests.wshub.orgs import USER, Org
from tests.wshub.support import HubClient, RunningHub, TcpProxy, create_user, eventually, hub_config, issuer_for, start_hub

RECONNECTS = "pgwarden_hub_listen_reconnects_total"


async def _reconnected(hub: RunningHub) -> None:
    await eventually(lambda: hub.metric(RECONNECTS) >= 1, "the LISTEN connection was re-established")


async def _drain(client: HubClient) -> list[dict]:
    """Every notification until the client has been quiet for a moment."""
    received = []
    while True:
        try:
            received.append(await client.notification(0.6))
        except TimeoutError:
            return received


def _covered(received: list[dict], items: list[str]) -> bool:
    """Each change arrived as its own event, or a SyncVault told the client to re-check."""
    if any(n["Type"] == 5 for n in received):
        return True
    return set(items) <= {n["Payload"].get("Id") for n in received}


async def test_terminated_listen_connection_recovers_and_closes_the_gap(start, db, make_user) -> None:
    hub = await start()
    ingress = hub.app.ctx.ingress
    active = [await make_user() for _ in range(2)]
    idle = await make_user()
    clients = {u.id: await HubClient.connect(hub.ws_url(access_token=u.token())) for u in [*active, idle]}
    made: dict[str, list[str]] = {u.id: [] for u in active}
    stop = asyncio.Event()

    async def keep_changing() -> None:
        writer = await asyncpg.connect(hub.app.ctx.ingress.database_url)
        try:
            while not stop.is_set():
                for user in active:
                    made[user.id].append(await writer.fetchval(
                        "INSERT INTO folders (user_id, name) VALUES ($1, 'x') RETURNING id::text", user.id))
                await asyncio.sleep(0.01)
        finally:
            await writer.close()

    def changes_made() -> int:
        return min(len(items) for items in made.values())

    changing = asyncio.create_task(keep_changing())
    await eventually(lambda: changes_made() >= 5, "changes before the link is cut")
    old_pid = ingress.backend_pid
    assert await db.fetchval("SELECT pg_terminate_backend($1)", old_pid)
    await eventually(lambda: ingress.connected.is_set() and ingress.backend_pid != old_pid, "a new LISTEN connection")
    after_reconnect = changes_made()
    await eventually(lambda: changes_made() >= after_reconnect + 5, "changes after the reconnect")
    stop.set()
    await changing

    assert hub.metric(RECONNECTS) >= 1
    for user in active:
        received = await _drain(clients[user.id])
        assert _covered(received, made[user.id]), (len(made[user.id]), received[-3:])
    await clients[idle.id].nothing()
    # and live delivery goes on over the new connection
    folder = await db.fetchval("INSERT INTO folders (user_id, name) VALUES ($1, 'x') RETURNING id::text", idle.id)
    assert (await clients[idle.id].notification())["Payload"]["Id"] == folder
    for client in clients.values():
        await client.close()


async def test_silent_link_is_detected_by_the_probe_and_the_gap_nudges_only_changed_users(
        database_url, pg_server, db, make_user) -> None:
    proxy = await TcpProxy(pg_server.host, pg_server.port).start()
    hub = await start_hub(proxy.url_for(database_url))
    try:
        ingress = hub.app.ctx.ingress
        changed, untouched = await make_user(), await make_user()
        changed_client = await HubClient.connect(hub.ws_url(access_token=changed.token()))
        second_device = await HubClient.connect(hub.ws_url(access_token=changed.token()), "json")
        untouched_client = await HubClient.connect(hub.ws_url(access_token=untouched.token()))
        # the network drops the hub's links without a word: no FIN, no error, only silence
        proxy.silence()
        await db.execute("INSERT INTO folders (user_id, name) VALUES ($1, 'x')", changed.id)
        revision = await db.fetchval("SELECT revision_date FROM pgwarden_user_revisions(ARRAY[$1::uuid])", changed.id)
        await _reconnected(hub)
        nudge = {"ContextId": None, "Type": 5, "Payload": {"UserId": changed.id, "Date": revision}}
        assert await _drain(changed_client) == [nudge]
        json_date = revision.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        assert await _drain(second_device) == [{**nudge, "Payload": {"UserId": changed.id, "Date": json_date}}]
        await untouched_client.nothing()
        assert ingress.connected.is_set()
        for client in (changed_client, second_device, untouched_client):
            await client.close()
    finally:
        await hub.stop()
        await proxy.close()


async def test_gap_nudges_the_members_of_an_organization_changed_in_it(database_url, pg_server, db,
                                                                       make_user) -> None:
    proxy = await TcpProxy(pg_server.host, pg_server.port).start()
    hub = await start_hub(proxy.url_for(database_url))
    try:
        member, outsider = await make_user(), await make_user()
        org = await Org.create(db)
        await org.member(member, USER, [await org.collection()])
        member_client = await HubClient.connect(hub.ws_url(access_token=member.token()))
        outsider_client = await HubClient.connect(hub.ws_url(access_token=outsider.token()))
        await eventually(lambda: member.id in hub.app.ctx.memberships, "the member's grants loaded")
        proxy.silence()
        # an item of the organization, in a collection the member does not hold: its event is
        # not the member's, but the member's revision date moves, and the nudge is a re-check
        await org.item([await org.collection()])
        revision = await db.fetchval("SELECT revision_date FROM pgwarden_user_revisions(ARRAY[$1::uuid])",
                                     member.id)
        await _reconnected(hub)
        assert await _drain(member_client) == [
            {"ContextId": None, "Type": 5, "Payload": {"UserId": member.id, "Date": revision}}]
        await outsider_client.nothing()
        for client in (member_client, outsider_client):
            await client.close()
    finally:
        await hub.stop()
        await proxy.close()


@pytest.fixture
async def private_postgres(data_dir: Path) -> AsyncIterator[tuple[object, str]]:
    """A throwaway PostgreSQL of our own to restart (never the shared one)."""
    from db.embedded import EmbeddedPostgres

    server = await asyncio.to_thread(EmbeddedPostgres, data_dir)
    url = server.url
    await asyncio.to_thread(migrate.upgrade, url)
    conn = await asyncpg.connect(url)
    try:
        from core.keystore import ensure_signing_key

        await ensure_signing_key(conn)
    finally:
        await conn.close()
    try:
        yield server, url
    finally:
        await asyncio.to_thread(server.stop)


async def test_postgres_restart_is_survived(private_postgres) -> None:
    server, url = private_postgres
    hub = await start_hub(url)
    try:
        db = await asyncpg.connect(url)
        issuer = await issuer_for(db, hub_config())
        changed, untouched, later = [await create_user(db, issuer) for _ in range(3)]
        clients = {u.id: await HubClient.connect(hub.ws_url(access_token=u.token())) for u in (changed, untouched, later)}
        # a change right before the server goes down: its event may or may not make it out
        before = await db.fetchval(
            "INSERT INTO folders (user_id, name) VALUES ($1, 'x') RETURNING id::text", changed.id)
        await db.close()
        await asyncio.to_thread(server.restart)
        ingress = hub.app.ctx.ingress
        await _reconnected(hub)
        assert ingress.connected.is_set()
        assert _covered(await _drain(clients[changed.id]), [before])
        await clients[untouched.id].nothing()
        db = await asyncpg.connect(url)
        folder = await db.fetchval("INSERT INTO folders (user_id, name) VALUES ($1, 'x') RETURNING id::text", later.id)
        await db.close()
        assert (await clients[later.id].notification())["Payload"]["Id"] == folder
        for client in clients.values():
            await client.close()
    finally:
        await hub.stop()


async def test_a_link_that_goes_silent_while_reconnecting_is_given_up_and_retried(
        database_url, pg_server, db, make_user) -> None:
    proxy = await TcpProxy(pg_server.host, pg_server.port).start()
    hub = await start_hub(proxy.url_for(database_url))
    try:
        user = await make_user()
        client = await HubClient.connect(hub.ws_url(access_token=user.token()))
        # the next LISTEN connection logs in, then hears nothing: the hub must not wait on it forever
        proxy.stall_after_startup = True
        proxy.silence()
        await eventually(lambda: proxy.stalled > 0, "a reconnect attempt over a stalling link")
        proxy.stall_after_startup = False
        await _reconnected(hub)
        folder = await db.fetchval("INSERT INTO folders (user_id, name) VALUES ($1, 'x') RETURNING id::text", user.id)
        assert (await client.notification())["Payload"]["Id"] == folder
        await client.close()
    finally:
        await hub.stop()
        await proxy.close()


async def test_a_failure_while_closing_the_gap_is_retried(database_url: str, db, make_user) -> None:
    """Whatever goes wrong during a reconnect, the one LISTEN task keeps trying."""
    from wshub.ingress import Ingress, IngressTuning

    user = (await make_user()).id
    received: list = []
    calls = 0

    def connected_users() -> list[str]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("registry unavailable")
        return [user]

    ingress = Ingress(database_url, received.append, connected_users,
                      tuning=IngressTuning(probe_interval=0.2, backoff_initial=0.05, backoff_max=0.2))
    await ingress.connect()
    task = asyncio.create_task(ingress.run())
    try:
        await db.execute("SELECT pg_terminate_backend($1)", ingress.backend_pid)
        await eventually(lambda: calls >= 2 and ingress.connected.is_set(), "a second, successful reconnect")
        await db.execute("INSERT INTO folders (user_id, name) VALUES ($1, 'after')", user)
        await eventually(lambda: any(e.type == 7 for e in received), "events flowing again")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await ingress.close()
