"""The Registry with real connections and no sockets: who is connected, the slots and their caps,
and which connections have outlived their expiry."""

from __future__ import annotations

import uuid

import pytest

from tests.wshub.memory import make_connection
from wshub.registry import LimitReached, Registry

ALICE, BOB = str(uuid.uuid4()), str(uuid.uuid4())
REQUEST = str(uuid.uuid4())


def _registry(max_connections: int = 100, max_anonymous: int = 100, max_per_user: int = 100,
              max_per_ip: int = 100) -> Registry:
    return Registry(max_connections=max_connections, max_anonymous=max_anonymous, max_per_user=max_per_user,
                    max_per_ip=max_per_ip)


def test_connections_are_found_by_user_and_by_auth_request() -> None:
    registry = _registry()
    phone, browser = make_connection(ALICE), make_connection(ALICE, protocol="json")
    other = make_connection(BOB)
    waiting = make_connection(auth_request_id=REQUEST)
    for connection in (phone, browser, other, waiting):
        registry.add(connection)
    assert registry.of_user(ALICE) == {phone, browser}
    assert registry.of_user(BOB) == {other}
    assert registry.waiting_for(REQUEST) == {waiting}
    assert sorted(registry.user_ids()) == sorted([ALICE, BOB])
    assert len(registry) == 4 and set(registry) == {phone, browser, other, waiting}


def test_nobody_is_an_empty_set() -> None:
    registry = _registry()
    assert registry.of_user(ALICE) == frozenset()
    assert registry.waiting_for(REQUEST) == frozenset()
    assert len(registry) == 0 and list(registry) == [] and registry.user_ids() == []
    assert registry.slots == 0


def test_lookups_are_snapshots_that_later_changes_do_not_touch() -> None:
    registry = _registry()
    first = make_connection(ALICE)
    registry.add(first)
    found = registry.of_user(ALICE)
    registry.add(make_connection(ALICE))
    registry.remove(first)
    assert found == {first}


def test_removing_every_connection_leaves_nothing_behind() -> None:
    registry = _registry()
    connections = [make_connection(ALICE, expires_at=2000.0), make_connection(BOB),
                   make_connection(auth_request_id=REQUEST, expires_at=2000.0)]
    for connection in connections:
        registry.add(connection)
    for connection in connections:
        registry.remove(connection)
    assert len(registry) == 0 and registry.user_ids() == []
    assert registry.waiting_for(REQUEST) == frozenset()
    assert registry.expired(3000.0) == []  # nor anything waiting to expire


def test_the_peak_remembers_the_most_connections_held_at_once() -> None:
    """The memory upkeep counts the peak as live: the allocator keeps what those connections took."""
    registry = _registry()
    connections = [make_connection(ALICE) for _ in range(3)]
    for connection in connections:
        registry.add(connection)
    for connection in connections[:2]:
        registry.remove(connection)
    registry.add(make_connection(BOB))
    assert len(registry) == 2 and registry.peak == 3


def test_removing_twice_or_an_unknown_connection_changes_nothing() -> None:
    registry = _registry()
    kept, gone = make_connection(ALICE), make_connection(ALICE)
    registry.add(kept)
    registry.add(gone)
    registry.remove(gone)
    registry.remove(gone)
    registry.remove(make_connection(BOB))
    assert len(registry) == 1 and registry.of_user(ALICE) == {kept}


def test_iterating_while_connections_leave_is_safe() -> None:
    registry = _registry()
    for _ in range(3):
        registry.add(make_connection(ALICE))
    for connection in registry:
        registry.remove(connection)
    assert len(registry) == 0


# -- slots: counted from admission, before any handshake ------------------------------------------


def test_a_slot_counts_from_its_reservation_until_its_release() -> None:
    registry = _registry(max_per_ip=2)
    first = registry.reserve("203.0.113.7", ALICE)
    registry.reserve("203.0.113.7")  # a handshake-less socket holds its place too
    assert registry.slots == 2 and len(registry) == 0
    with pytest.raises(LimitReached) as refused:
        registry.reserve("203.0.113.7", BOB)
    assert str(refused.value) == "more than 2 connections from 203.0.113.7" and not refused.value.hub_full
    registry.release(first)
    registry.release(first)  # a second release changes nothing
    assert registry.slots == 1
    registry.reserve("203.0.113.7", BOB)


def test_per_user_cap_refuses_one_more_and_frees_a_place_on_release() -> None:
    registry = _registry(max_per_user=2)
    first = registry.reserve("192.0.2.1", ALICE)
    registry.reserve("192.0.2.2", ALICE)
    with pytest.raises(LimitReached, match="more than 2 connections for one user"):
        registry.reserve("192.0.2.3", ALICE)
    registry.reserve("192.0.2.3", BOB)  # another user is not limited by it
    registry.release(first)
    registry.reserve("192.0.2.3", ALICE)


def test_the_hub_wide_cap_counts_every_slot() -> None:
    registry = _registry(max_connections=3)
    slots = [registry.reserve(f"192.0.2.{n}", ALICE if n % 2 else None) for n in range(3)]
    with pytest.raises(LimitReached) as refused:
        registry.reserve("198.51.100.1", BOB)
    assert refused.value.hub_full and str(refused.value) == "the hub is at its limit of 3 connections"
    registry.release(slots[0])
    registry.reserve("198.51.100.1", BOB)


def test_anonymous_connections_have_a_smaller_cap_of_their_own() -> None:
    registry = _registry(max_connections=10, max_anonymous=2)
    waiting = [registry.reserve(f"192.0.2.{n}") for n in range(2)]
    with pytest.raises(LimitReached) as refused:
        registry.reserve("198.51.100.1")
    assert refused.value.hub_full and str(refused.value) == "the anonymous hub is at its limit of 2 connections"
    registry.reserve("198.51.100.1", ALICE)  # signed-in clients still get in
    registry.release(waiting[0])
    registry.reserve("198.51.100.1")
    assert registry.slots == 3


def test_a_refused_reservation_holds_nothing() -> None:
    registry = _registry(max_per_user=1)
    registry.reserve("192.0.2.1", ALICE)
    with pytest.raises(LimitReached):
        registry.reserve("192.0.2.2", ALICE)
    assert registry.slots == 1
    registry.reserve("192.0.2.2", BOB)


# -- expiry -----------------------------------------------------------------------------------------


def test_expired_returns_each_connection_past_its_expiry_once() -> None:
    registry = _registry()
    soon, later = make_connection(ALICE, expires_at=1010.4), make_connection(BOB, expires_at=1100.0)
    never = make_connection(ALICE)
    waiting = make_connection(auth_request_id=REQUEST, expires_at=1005.0)
    for connection in (soon, later, never, waiting):
        registry.add(connection)
    registry.expired(1000.0)
    assert registry.expired(1010.0) == [waiting]  # never before its time
    assert registry.expired(1011.0) == [soon]
    assert registry.expired(1050.0) == []
    assert registry.expired(5000.0) == [later]
    assert registry.expired(10**6) == []
    assert len(registry) == 4  # closing them is the caller's part; they leave when their socket does


def test_a_connection_that_expired_before_it_was_added_goes_at_the_next_sweep() -> None:
    registry = _registry()
    registry.expired(1000.0)
    late = make_connection(ALICE, expires_at=990.0)
    registry.add(late)
    assert registry.expired(1000.5) == [late]


def test_a_removed_connection_is_not_returned_as_expired() -> None:
    registry = _registry()
    gone = make_connection(ALICE, expires_at=1010.0)
    registry.add(gone)
    registry.remove(gone)
    assert registry.expired(2000.0) == []
