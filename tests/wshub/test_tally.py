"""The pace of new connections per address, in one process and shared by the hub's workers."""

from __future__ import annotations

import multiprocessing
from typing import Any

import pytest

from wshub.tally import LocalTally, SharedTally


@pytest.fixture(params=["local", "shared"])
def tally(request: pytest.FixtureRequest) -> Any:
    return LocalTally() if request.param == "local" else SharedTally()


def test_a_burst_then_one_connection_per_interval(tally: Any) -> None:
    paced = [tally.pace("192.0.2.1", 1000.0, 3, 10.0) for _ in range(5)]
    assert paced == [True, True, True, False, False]
    assert tally.pace("198.51.100.1", 1000.0, 3, 10.0)  # another address has its own bucket
    assert tally.pace("192.0.2.1", 1009.0, 3, 10.0) is False  # the refused ones took nothing
    assert [tally.pace("192.0.2.1", 1010.0, 3, 10.0) for _ in range(2)] == [True, False]
    # a bucket left alone fills up again, to the burst and no more
    assert [tally.pace("192.0.2.1", 2000.0, 3, 10.0) for _ in range(4)] == [True, True, True, False]


def test_a_local_tally_forgets_the_addresses_whose_bucket_is_full_again() -> None:
    tally = LocalTally()
    for n in range(5000):
        assert tally.pace(f"10.0.{n // 256}.{n % 256}", float(n), 2, 1.0)
    assert len(tally._full_at) < 2048  # noqa: SLF001 - what bounds its memory


def _pace_many(tally: SharedTally, attempts: int, paced: Any) -> None:
    for _ in range(attempts):
        if tally.pace("192.0.2.1", 1000.0, 50, 3600.0):
            with paced.get_lock():
                paced.value += 1


def test_processes_pacing_one_address_never_pass_its_burst_together() -> None:
    context = multiprocessing.get_context("spawn")
    tally = SharedTally(context)
    paced = context.Value("i", 0)
    processes = [context.Process(target=_pace_many, args=(tally, 200, paced)) for _ in range(3)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    assert paced.value == 50
    assert not tally.pace("192.0.2.1", 1000.0, 50, 3600.0)
