"""heap.Collector: what survives a collection is frozen out of the collector's reach, and a
full collection, which alone frees a frozen object's cycles, runs when sessions closed or time
says so."""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

import heap


class _Node:
    """A cycle only the collector can free."""

    def __init__(self) -> None:
        self.me = self


class _Sessions:
    def __init__(self) -> None:
        self.closed = 0
        self.open = 0


@pytest.fixture
def sessions() -> _Sessions:
    return _Sessions()


@pytest.fixture
def collectors() -> Iterator[list[heap.Collector]]:
    thresholds = gc.get_threshold()
    started: list[heap.Collector] = []
    yield started
    for collector in started:
        collector.stop()
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def started(
    collectors: list[heap.Collector], sessions: _Sessions, **kwargs: Any
) -> heap.Collector:
    collector = heap.Collector(lambda: sessions.closed, lambda: sessions.open, **kwargs)
    collector.start()
    collectors.append(collector)
    return collector


@pytest.mark.gen_test
async def test_start_freezes_the_start_up_heap_and_raises_the_young_threshold(
    collectors: list[heap.Collector], sessions: _Sessions
) -> None:
    older = gc.get_threshold()[1:]
    built_at_start_up = [_Node() for _ in range(10)]
    frozen_before = gc.get_freeze_count()
    started(collectors, sessions)
    assert gc.get_freeze_count() >= frozen_before + len(built_at_start_up)
    assert gc.get_threshold() == (heap.YOUNG_THRESHOLD, *older)
    later = weakref.ref(_Node())
    gc.collect(0)
    assert later() is None  # a cycle that is garbage by the next collection is freed by it


@pytest.mark.gen_test
async def test_what_survives_a_collection_is_frozen_and_only_a_full_collection_frees_it(
    collectors: list[heap.Collector], sessions: _Sessions
) -> None:
    collector = started(collectors, sessions)
    survivor = _Node()
    frozen_before = gc.get_freeze_count()
    gc.collect(0)
    assert gc.get_freeze_count() > frozen_before
    assert gc.get_count() == (0, 0, 0)  # no middle or full collection comes due
    gone = weakref.ref(survivor)
    del survivor
    gc.collect()  # CPython's own full collection does not walk what is frozen
    assert gone() is not None
    collector.collect()
    assert gone() is None


@pytest.mark.gen_test
async def test_without_the_collector_a_survivor_is_not_frozen(
    collectors: list[heap.Collector], sessions: _Sessions
) -> None:
    started(collectors, sessions).stop()
    survivor = _Node()
    frozen_before = gc.get_freeze_count()
    gc.collect(0)
    assert gc.get_freeze_count() == frozen_before
    gone = weakref.ref(survivor)
    del survivor
    gc.collect()
    assert gone() is None


@pytest.mark.gen_test
async def test_a_full_collection_is_due_when_a_quarter_of_the_open_sessions_closed(
    collectors: list[heap.Collector], sessions: _Sessions
) -> None:
    collector = started(collectors, sessions, min_closes=10)
    sessions.open = 100
    sessions.closed = 24
    assert not collector.check()
    assert not collector.check()  # 24 closed before the previous check: not yet a quarter
    sessions.closed = 25
    assert not collector.check()  # closed since the previous check: their connections may
    assert collector.check()  # still be closing; one check later they count
    assert not collector.check()  # counted from the last full collection
    sessions.open = 0
    sessions.closed = 34
    collector.check()
    assert not collector.check()  # fewer than min_closes
    sessions.closed = 35
    collector.check()
    assert collector.check()


@pytest.mark.gen_test
async def test_a_due_full_collection_waits_for_a_calm_loop(
    collectors: list[heap.Collector], sessions: _Sessions
) -> None:
    collector = started(collectors, sessions, min_closes=10)
    busy = heap.CALM_LATENESS * 2
    sessions.closed = 10
    assert not collector.check()
    for _ in range(3):  # a wave of closes, and the leaves it sends, keep the loop busy
        assert not collector.check(lateness=busy)
    assert collector.check(lateness=heap.CALM_LATENESS)


@pytest.mark.gen_test
async def test_a_due_full_collection_waits_for_the_store_calls_in_flight(
    collectors: list[heap.Collector], sessions: _Sessions
) -> None:
    in_flight = [1]
    collector = started(collectors, sessions, min_closes=10, busy=lambda: in_flight[0] > 0)
    sessions.closed = 10
    collector.check()
    assert not collector.check()
    in_flight[0] = 0
    assert collector.check()


@pytest.mark.gen_test
async def test_a_due_full_collection_waits_at_most_max_wait(
    collectors: list[heap.Collector], sessions: _Sessions
) -> None:
    collector = started(collectors, sessions, min_closes=10, max_wait=0.0)
    sessions.closed = 10
    collector.check()
    assert collector.check(lateness=heap.CALM_LATENESS * 2)


@pytest.mark.gen_test
async def test_a_full_collection_is_due_after_the_interval_only_if_something_was_frozen(
    collectors: list[heap.Collector], sessions: _Sessions
) -> None:
    collector = started(collectors, sessions, interval=0.0)
    assert not collector.check()  # nothing frozen since start-up's own collection
    gc.collect(0)
    assert collector.check()


@pytest.mark.gen_test
async def test_the_schedule_runs_a_due_collection_and_logs_it(
    collectors: list[heap.Collector], sessions: _Sessions, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=heap.__name__)
    started(collectors, sessions, min_closes=1, check_interval=0.01)
    survivor = _Node()
    gc.collect(0)
    freed = asyncio.Event()
    weakref.finalize(survivor, freed.set)
    del survivor
    sessions.closed = 1
    async with asyncio.timeout(5):
        await freed.wait()
    (line,) = [r.getMessage() for r in caplog.records if r.name == heap.__name__]
    assert line.startswith("full garbage collection: ")
    assert line.endswith(", 1 sessions closed since the last")


@pytest.mark.gen_test
async def test_a_burst_of_opens_pauses_young_collections_until_a_calm_check(
    collectors: list[heap.Collector], sessions: _Sessions
) -> None:
    collector = started(collectors, sessions)
    sessions.open = heap.BURST_OPENS_PER_SECOND
    assert collector.pace()
    assert not gc.isenabled()
    garbage = _Node()
    gone = weakref.ref(garbage)
    del garbage
    sessions.open += heap.BURST_OPENS_PER_SECOND // 2
    sessions.closed += heap.BURST_OPENS_PER_SECOND // 2  # opened and closed: opened all the same
    frozen_before = gc.get_freeze_count()
    assert collector.pace()
    assert gc.get_freeze_count() > frozen_before  # frozen at each check, unscanned
    gc.collect(0)
    assert gone() is not None
    assert not collector.pace()  # no session opened since: calm
    assert gc.isenabled()
    later = weakref.ref(_Node())
    gc.collect(0)
    assert later() is None  # young collections are back
    collector.collect()
    assert gone() is None  # the burst's garbage waited for the full collection


@pytest.mark.gen_test
async def test_young_collections_go_on_below_the_burst_rate(
    collectors: list[heap.Collector], sessions: _Sessions
) -> None:
    collector = started(collectors, sessions)
    sessions.open = heap.BURST_OPENS_PER_SECOND - 1
    assert not collector.pace()
    assert gc.isenabled()
    gone = weakref.ref(_Node())
    gc.collect(0)
    assert gone() is None


@pytest.mark.gen_test
async def test_stopping_during_a_burst_resumes_young_collections(
    collectors: list[heap.Collector], sessions: _Sessions
) -> None:
    collector = started(collectors, sessions)
    sessions.open = heap.BURST_OPENS_PER_SECOND
    assert collector.pace()
    collector.stop()
    assert gc.isenabled()


@pytest.mark.gen_test
async def test_the_schedule_paces_young_collections(
    collectors: list[heap.Collector], sessions: _Sessions
) -> None:
    looked = asyncio.Event()
    looks = [0]

    def sessions_open() -> int:
        looks[0] += 1
        if looks[0] > 3:  # start-up's look and at least one check's
            looked.set()
        return looks[0] * heap.BURST_OPENS_PER_SECOND  # a burst that goes on

    collector = heap.Collector(lambda: 0, sessions_open, check_interval=0.01)
    collector.start()
    collectors.append(collector)
    async with asyncio.timeout(5):
        await looked.wait()
    assert not gc.isenabled()
