"""The hub's grants of its connected users while they load: the races, without sockets. The
loads are held by the test, so each interleaving is forced rather than hoped for."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timezone

import pytest

from db.events import Event, PushType
from wshub import memberships as module
from wshub.memberships import Memberships

USER, ORG, A, B = (str(uuid.uuid4()) for _ in range(4))


class HeldLoads:
    """A loader whose every call waits until the test answers it with rows (or an error)."""

    def __init__(self) -> None:
        self.calls: asyncio.Queue[tuple[list[str], asyncio.Future[list[tuple[str, str, str | None]]]]] = asyncio.Queue()

    async def __call__(self, user_ids: list[str]) -> list[tuple[str, str, str | None]]:
        answer = asyncio.get_running_loop().create_future()
        await self.calls.put((user_ids, answer))
        return await answer

    async def taken(self) -> tuple[list[str], asyncio.Future[list[tuple[str, str, str | None]]]]:
        """The next load, under way and held."""
        return await asyncio.wait_for(self.calls.get(), 5)

    async def answer(self, rows: list[tuple[str, str, str | None]] | Exception,
                     call: tuple[list[str], asyncio.Future[list[tuple[str, str, str | None]]]] | None = None) -> list[str]:
        users, future = call or await self.taken()
        if isinstance(rows, Exception):
            future.set_exception(rows)
        else:
            future.set_result(rows)
        for _ in range(5):
            await asyncio.sleep(0)
        return users


def item_event(collection: str) -> Event:
    return Event(PushType.SYNC_CIPHER_CREATE, None, ORG, str(uuid.uuid4()), datetime.now(timezone.utc), None,
                 (collection,), None)


@pytest.fixture
def hub() -> tuple[Memberships, HeldLoads, list[tuple[str, Event]]]:
    loads, replayed = HeldLoads(), []
    return Memberships(loads, lambda user, event: replayed.append((user, event))), loads, replayed


async def test_event_during_the_first_load_is_routed_once_the_grants_are_in(hub) -> None:
    memberships, loads, replayed = hub
    memberships.connected(USER)
    seen, unseen = item_event(A), item_event(B)
    assert memberships.route(seen) == [] and memberships.route(unseen) == []  # not routable yet
    await loads.answer([(USER, ORG, A)])
    # both replayed to the user alone; its own routing then picks what it sees
    assert replayed == [(USER, seen), (USER, unseen)]
    assert [group.users for group in memberships.route(seen, only=USER)] == [(USER,)]
    assert memberships.route(unseen, only=USER) == []
    assert [group.users for group in memberships.route(item_event(A))] == [(USER,)]


async def test_change_signalled_while_loading_discards_the_older_rows(hub) -> None:
    memberships, loads, replayed = hub
    memberships.connected(USER)
    first = await loads.taken()
    memberships.changed(USER)  # a grant went away while the first load ran
    await loads.answer([(USER, ORG, A)], first)  # rows read before the change
    assert USER not in memberships
    await loads.answer([(USER, ORG, B)])
    assert memberships.grants_of(USER) == {ORG: frozenset({B})}
    assert memberships.route(item_event(A)) == []


async def test_removed_member_is_out_of_routing_from_the_signal_on(hub) -> None:
    memberships, loads, _ = hub
    memberships.connected(USER)
    await loads.answer([(USER, ORG, None)])
    assert [group.users for group in memberships.route(item_event(A))] == [(USER,)]
    memberships.changed(USER)
    assert memberships.route(item_event(A)) == []  # before the new grants are read
    await loads.answer([])
    assert memberships.grants_of(USER) == {}


async def test_user_gone_while_loading_leaves_nothing(hub) -> None:
    memberships, loads, replayed = hub
    memberships.connected(USER)
    under_way = await loads.taken()
    memberships.route(item_event(A))
    memberships.disconnected(USER)
    await loads.answer([(USER, ORG, A)], under_way)
    assert USER not in memberships and replayed == []
    assert not memberships._members and not memberships._loading and not memberships._log


async def test_failed_load_is_retried(hub, monkeypatch) -> None:
    monkeypatch.setattr(module, "RETRY_DELAY", 0.01)
    memberships, loads, _ = hub
    memberships.connected(USER)
    await loads.answer(OSError("database away"))
    assert USER not in memberships
    await loads.answer([(USER, ORG, A)])
    assert memberships.grants_of(USER) == {ORG: frozenset({A})}


async def test_events_past_the_log_become_a_sync_vault(hub, monkeypatch) -> None:
    monkeypatch.setattr(module, "MAX_LOG", 3)
    memberships, loads, replayed = hub
    memberships.connected(USER)
    for _ in range(5):
        memberships.route(item_event(A))
    await loads.answer([(USER, ORG, A)])
    [(user, event)] = replayed
    assert (user, event.type, event.user_id) == (USER, PushType.SYNC_VAULT, USER)


async def test_users_arriving_together_load_in_one_query(hub) -> None:
    memberships, loads, _ = hub
    others = [str(uuid.uuid4()) for _ in range(3)]
    memberships.connected(USER)
    first = await loads.taken()
    for user in others:
        memberships.connected(user)
    assert await loads.answer([], first) == [USER]  # under way before the others came
    assert await loads.answer([]) == sorted(others)
