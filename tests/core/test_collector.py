"""Tenured survivors: a collection never walks again what lived through one, and the memory
upkeep's full collection still finds cyclic garbage among them."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from core.collector import collect_everything, collect_young_periodically, tenure_survivors


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only a collection frees it


@pytest.fixture
def tenuring() -> Iterator[None]:
    undo = tenure_survivors(young=500)
    try:
        yield
    finally:
        undo()


def test_what_survives_a_collection_is_never_walked_again(tenuring: None) -> None:
    survivor = _Node()
    gc.collect(0)
    assert gc.is_tracked(survivor)
    assert not any(obj is survivor for generation in range(3) for obj in gc.get_objects(generation))
    frozen = gc.get_freeze_count()
    # the automatic collector tenures too: enough new objects start one, which freezes them
    kept = [[] for _ in range(2_000)]
    assert gc.get_freeze_count() > frozen
    assert gc.get_count()[0] < 2_000
    del kept


def test_reference_counting_still_frees_a_tenured_object(tenuring: None) -> None:
    holder = _Node()
    probe = weakref.ref(holder)
    gc.collect(0)  # tenured
    holder.me = None  # its cycle broken, as a hub connection breaks its own when it closes
    del holder
    assert probe() is None


def test_a_tenured_cycle_is_found_by_collect_everything_only(tenuring: None) -> None:
    cycle = _Node()
    probe = weakref.ref(cycle)
    gc.collect(0)  # alive at a collection: tenured
    del cycle
    gc.collect()
    assert probe() is not None  # the automatic collector, full collections included, skips it
    assert collect_everything() > 0
    assert probe() is None
    later = _Node()
    gc.collect(0)
    assert not any(obj is later for generation in range(3) for obj in gc.get_objects(generation))


def test_undo_puts_the_collector_back() -> None:
    before = gc.get_threshold()
    undo = tenure_survivors(young=700)
    undo()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
    cycle = _Node()
    probe = weakref.ref(cycle)
    gc.collect(0)
    del cycle
    gc.collect()
    assert probe() is None


async def test_young_collections_come_on_time_even_when_the_count_does_not_grow(tenuring: None) -> None:
    """The collector counts allocations less deallocations: objects made while tenured ones go
    (connections closing as others open) are never counted, and would pile up unwalked."""
    tenured = [_Node() for _ in range(3_000)]
    gc.collect(0)
    pacing = asyncio.create_task(collect_young_periodically(0.01))
    try:
        for node in tenured:
            node.me = None  # reference counting can free them now
        made = []
        while tenured:  # a tenured object gone for each new one: the count stays put
            tenured.pop()
            made.append([])
        assert gc.get_count()[0] < 500  # the automatic collector would not come
        assert any(obj is made[0] for obj in gc.get_objects(0))
        await asyncio.sleep(0.1)
        assert not any(obj is made[0] for obj in gc.get_objects(0))
    finally:
        pacing.cancel()


async def test_without_tenuring_nothing_is_paced() -> None:
    await asyncio.wait_for(collect_young_periodically(0.01), 1)


def test_without_tenuring_what_the_process_froze_stays_frozen() -> None:
    """The API freezes its startup objects once: the upkeep's full collection must not walk them."""
    kept = _Node()
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        collect_everything()
        assert gc.get_freeze_count() == frozen
        assert not any(obj is kept for generation in range(3) for obj in gc.get_objects(generation))
    finally:
        gc.unfreeze()
