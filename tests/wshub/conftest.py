"""Fixtures for the hub tests: a hub in the test's event loop, users, and clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from core.tokens import TokenIssuer
from tests.wshub.support import FAST, HubClient, HubUser, RunningHub, create_user, hub_config, issuer_for, start_hub
from wshub.app import HubTuning


@pytest.fixture
async def start(database_url: str) -> AsyncIterator[Callable[..., Awaitable[RunningHub]]]:
    """Starts hubs with given settings; all are stopped at the end."""
    hubs: list[RunningHub] = []

    async def starter(tuning: HubTuning = FAST, **settings: Any) -> RunningHub:
        hub = await start_hub(database_url, hub_config(**settings), tuning)
        hubs.append(hub)
        return hub

    yield starter
    for hub in hubs:
        await hub.stop()


@pytest.fixture
async def hub(start: Callable[..., Awaitable[RunningHub]]) -> RunningHub:
    return await start()


@pytest.fixture
async def issuer(db: asyncpg.Connection) -> TokenIssuer:
    return await issuer_for(db, hub_config())


@pytest.fixture
def make_user(db: asyncpg.Connection, issuer: TokenIssuer) -> Callable[[], Awaitable[HubUser]]:
    async def make() -> HubUser:
        return await create_user(db, issuer)

    return make


@pytest.fixture
async def connect(hub: RunningHub) -> AsyncIterator[Callable[..., Awaitable[HubClient]]]:
    """Opens raw SignalR clients to the hub; all are closed at the end."""
    clients: list[HubClient] = []

    async def open_client(user: HubUser, protocol: str = "messagepack", device: str | None = None) -> HubClient:
        client = await HubClient.connect(hub.ws_url(access_token=user.token(device)), protocol)
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        await client.close()
