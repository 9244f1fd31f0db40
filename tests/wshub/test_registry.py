"""The Registry with real connections and no sockets: who is connected, and the caps."""

from __future__ import annotations

import uuid

from tests.wshub.memory import make_connection
from wshub.registry import Registry

ALICE, BOB = str(uuid.uuid4()), str(uuid.uuid4())
REQUEST = str(uuid.uuid4())


def test_connections_are_found_by_user_and_by_auth_request() -> None:
    registry = Registry(max_per_user=10, max_per_ip=10)
    phone, browser = make_connection(ALICE), make_connection(ALICE, protocol="json")
    other = make_connection(BOB)
    waiting = make_connection(auth_request_id=REQUEST)
    for connection in (phone, browser, other, waiting):
        assert registry.add(connection) is None
    assert registry.of_user(ALICE) == {phone, browser}
    assert registry.of_user(BOB) == {other}
    assert registry.waiting_for(REQUEST) == {waiting}
    assert sorted(registry.user_ids()) == sorted([ALICE, BOB])
    assert len(registry) == 4 and set(registry) == {phone, browser, other, waiting}


def test_nobody_is_an_empty_set() -> None:
    registry = Registry(10, 10)
    assert registry.of_user(ALICE) == frozenset()
    assert registry.waiting_for(REQUEST) == frozenset()
    assert len(registry) == 0 and list(registry) == [] and registry.user_ids() == []


def test_lookups_are_snapshots_that_later_changes_do_not_touch() -> None:
    registry = Registry(10, 10)
    first = make_connection(ALICE)
    registry.add(first)
    found = registry.of_user(ALICE)
    registry.add(make_connection(ALICE))
    registry.remove(first)
    assert found == {first}


def test_removing_every_connection_leaves_nothing_behind() -> None:
    registry = Registry(10, 10)
    connections = [make_connection(ALICE), make_connection(BOB), make_connection(auth_request_id=REQUEST)]
    for connection in connections:
        registry.add(connection)
    for connection in connections:
        registry.remove(connection)
    assert len(registry) == 0 and registry.user_ids() == []
    assert registry.waiting_for(REQUEST) == frozenset()
    # the address count went back to zero too: a full cap's worth fits again
    assert registry.refusal("192.0.2.1", ALICE) is None


def test_removing_twice_or_an_unknown_connection_changes_nothing() -> None:
    registry = Registry(10, 10)
    kept, gone = make_connection(ALICE), make_connection(ALICE)
    registry.add(kept)
    registry.add(gone)
    registry.remove(gone)
    registry.remove(gone)
    registry.remove(make_connection(BOB))
    assert len(registry) == 1 and registry.of_user(ALICE) == {kept}


def test_iterating_while_connections_leave_is_safe() -> None:
    registry = Registry(10, 10)
    for _ in range(3):
        registry.add(make_connection(ALICE))
    for connection in registry:
        registry.remove(connection)
    assert len(registry) == 0


def test_per_user_cap_refuses_one_more_and_frees_a_place_on_remove() -> None:
    registry = Registry(max_per_user=2, max_per_ip=100)
    first, second = make_connection(ALICE, ip="192.0.2.1"), make_connection(ALICE, ip="192.0.2.2")
    registry.add(first)
    registry.add(second)
    assert registry.refusal("192.0.2.3", ALICE) == "more than 2 connections for one user"
    assert registry.add(make_connection(ALICE, ip="192.0.2.3")) == "more than 2 connections for one user"
    assert registry.add(make_connection(BOB, ip="192.0.2.3")) is None  # another user is not limited by it
    registry.remove(first)
    assert registry.add(make_connection(ALICE, ip="192.0.2.3")) is None
    assert len(registry.of_user(ALICE)) == 2


def test_per_address_cap_counts_every_hub_from_that_address() -> None:
    registry = Registry(max_per_user=100, max_per_ip=2)
    registry.add(make_connection(ALICE, ip="203.0.113.7"))
    registry.add(make_connection(auth_request_id=REQUEST, ip="203.0.113.7"))
    assert registry.refusal("203.0.113.7") == "more than 2 connections from 203.0.113.7"
    assert registry.add(make_connection(BOB, ip="203.0.113.7")) == "more than 2 connections from 203.0.113.7"
    assert registry.add(make_connection(BOB, ip="198.51.100.1")) is None
    assert len(registry) == 3


def test_a_refused_connection_is_not_registered() -> None:
    registry = Registry(max_per_user=1, max_per_ip=10)
    registry.add(make_connection(ALICE))
    refused = make_connection(ALICE)
    assert registry.add(refused) is not None
    assert refused not in registry.of_user(ALICE) and len(registry) == 1
    registry.remove(refused)  # harmless
    assert len(registry) == 1
