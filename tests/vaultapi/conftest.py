"""Fixtures that run the real API app on a local port against the test database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from core.config import Config
from tests.support.bwclient import BitwardenClient
from tests.support.serve import serve
from vaultapi.app import create_app

PASSWORD = "correct horse battery staple"
ROOT_DIR = Path(__file__).resolve().parents[2]


@asynccontextmanager
async def running_api(database_url: str, **settings: Any) -> AsyncIterator[str]:
    """Serve a fresh app on 127.0.0.1 (a free port) for the duration; yields its base URL."""
    max_body_size = settings.pop("max_body_size", None)
    config = Config(database_url=database_url, domain="https://vault.test", **settings)
    served = await serve(create_app(config, **({"max_body_size": max_body_size} if max_body_size else {})))
    try:
        yield served.url
    finally:
        await served.stop()


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[str]:
    async with running_api(database_url) as url:
        yield url


@asynccontextmanager
async def client_factory(url: str) -> AsyncIterator[Callable[..., BitwardenClient]]:
    """A factory of clients (devices) for the API at url; closes them all at the end."""
    made: list[BitwardenClient] = []

    def make(**kwargs: Any) -> BitwardenClient:
        client = BitwardenClient(url, **kwargs)
        made.append(client)
        return client

    try:
        yield make
    finally:
        for client in made:
            await client.aclose()


@pytest.fixture
async def new_client(api: str) -> AsyncIterator[Callable[..., BitwardenClient]]:
    async with client_factory(api) as make:
        yield make


async def registered(new_client: Callable[..., BitwardenClient], email: str, name: str) -> BitwardenClient:
    client = new_client()
    await client.register(email, PASSWORD, name=name)
    await client.login()
    return client


@pytest.fixture
async def alice(new_client: Callable[..., BitwardenClient]) -> BitwardenClient:
    """A registered, logged-in user."""
    return await registered(new_client, "alice@example.com", "Alice")


@pytest.fixture
async def bob(new_client: Callable[..., BitwardenClient]) -> BitwardenClient:
    """Another user, for the cross-user cases."""
    return await registered(new_client, "bob@example.com", "Bob")


async def user_id_of(client: BitwardenClient) -> str:
    return (await client.get("/api/accounts/profile")).json()["id"]


def assert_event(event: Any, push_type: int, user_id: str, item_id: str | None, context: str | None) -> None:
    """One published event: its type, whose it is, what it names, and the acting device."""
    assert (int(event.type), event.user_id, event.item_id, event.device_identifier) == (
        push_type, user_id, item_id, context), event


@pytest.fixture
async def carol(new_client: Callable[..., BitwardenClient]) -> BitwardenClient:
    """A third user, for organizations with several members."""
    return await registered(new_client, "carol@example.com", "Carol")
