"""The generic Coalescer: batches by size or delay, one outcome per item."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from store.coalesce import DEFAULT_MAX_SIZE, Coalescer

LONG_DELAY = 60.0  # never reached: the test flushes by size first


class Recorder:
    """A batch runner that doubles numbers, fails odd-negative ones, and records its batches."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.started = asyncio.Semaphore(0)
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self, items: Sequence[int]) -> list[int | Exception]:
        self.batches.append(list(items))
        self.started.release()
        await self.release.wait()
        return [ValueError(item) if item < 0 else item * 2 for item in items]


@pytest.mark.gen_test
async def test_flushes_when_full_without_waiting():
    runner = Recorder()
    coalescer = Coalescer(runner, max_size=3, max_delay=LONG_DELAY)

    results = await asyncio.gather(*(coalescer.submit(i) for i in range(6)))

    assert results == [0, 2, 4, 6, 8, 10]
    assert runner.batches == [[0, 1, 2], [3, 4, 5]]


@pytest.mark.gen_test
async def test_by_default_fifty_items_of_one_turn_go_as_two_batches_that_overlap():
    """The join bench's 50 joins in flight: the second batch runs while the first still waits
    (on Redis, in the server), not after it."""
    runner = Recorder()
    runner.release.clear()
    coalescer = Coalescer(runner)

    submitted = asyncio.gather(*(coalescer.submit(i) for i in range(50)))
    await runner.started.acquire()
    await runner.started.acquire()  # both are running, neither has returned
    runner.release.set()

    assert await submitted == [i * 2 for i in range(50)]
    assert [len(batch) for batch in runner.batches] == [DEFAULT_MAX_SIZE, 50 - DEFAULT_MAX_SIZE]
    assert 50 - DEFAULT_MAX_SIZE > 0


@pytest.mark.gen_test
async def test_flushes_after_the_delay():
    runner = Recorder()
    coalescer = Coalescer(runner, max_size=100, max_delay=0.001)

    results = await asyncio.gather(*(coalescer.submit(i) for i in range(5)))

    assert results == [0, 2, 4, 6, 8]
    assert runner.batches == [[0, 1, 2, 3, 4]]


@pytest.mark.gen_test
async def test_by_default_a_batch_is_what_one_loop_turn_submitted():
    runner = Recorder()
    coalescer = Coalescer(runner)

    first = await asyncio.gather(*(coalescer.submit(i) for i in range(3)))  # submitted together
    second = await asyncio.gather(*(coalescer.submit(i) for i in (3, 4)))

    assert (first, second) == ([0, 2, 4], [6, 8])
    assert runner.batches == [[0, 1, 2], [3, 4]]


@pytest.mark.gen_test
async def test_a_batch_runs_at_the_first_loop_turn_after_its_items_came():
    """Each batched stage of a join costs its latency in loop turns: one, not a timer's turn
    and then a task's."""
    runner = Recorder()
    coalescer = Coalescer(runner)
    pending = asyncio.ensure_future(coalescer.submit(1))
    await asyncio.sleep(0)  # this turn: the submit runs, and starts its batch's task

    assert runner.batches == []
    await asyncio.sleep(0)  # the next: the batch runs
    assert runner.batches == [[1]]
    assert await pending == 2


@pytest.mark.gen_test
async def test_one_failing_item_does_not_fail_the_others():
    coalescer = Coalescer(Recorder(), max_size=3, max_delay=LONG_DELAY)

    results = await asyncio.gather(
        *(coalescer.submit(i) for i in (1, -1, 2)), return_exceptions=True
    )

    assert results[0] == 2 and results[2] == 4
    assert isinstance(results[1], ValueError)


@pytest.mark.gen_test
async def test_a_failing_batch_fails_each_of_its_items():
    class Down(Exception):
        pass

    async def run(items: Sequence[int]) -> list[int]:
        raise Down()

    coalescer = Coalescer(run, max_size=2, max_delay=LONG_DELAY)

    results = await asyncio.gather(*(coalescer.submit(i) for i in range(2)), return_exceptions=True)

    assert all(isinstance(result, Down) for result in results)


@pytest.mark.gen_test
async def test_a_runner_returning_the_wrong_count_fails_the_batch():
    async def run(items: Sequence[int]) -> list[int]:
        return [1]

    coalescer = Coalescer(run, max_size=2, max_delay=LONG_DELAY)

    results = await asyncio.gather(*(coalescer.submit(i) for i in range(2)), return_exceptions=True)

    assert all(isinstance(result, RuntimeError) for result in results)


@pytest.mark.gen_test
async def test_batches_run_concurrently():
    runner = Recorder()
    runner.release.clear()
    coalescer = Coalescer(runner, max_size=2, max_delay=LONG_DELAY)

    pending = [asyncio.ensure_future(coalescer.submit(i)) for i in range(4)]
    for _ in range(2):  # the second batch starts while the first is held
        await runner.started.acquire()
    runner.release.set()

    assert await asyncio.gather(*pending) == [0, 2, 4, 6]


@pytest.mark.gen_test
async def test_a_cancelled_caller_does_not_disturb_the_batch():
    runner = Recorder()
    runner.release.clear()
    coalescer = Coalescer(runner, max_size=2, max_delay=LONG_DELAY)

    cancelled = asyncio.ensure_future(coalescer.submit(1))
    kept = asyncio.ensure_future(coalescer.submit(2))
    await runner.started.acquire()
    cancelled.cancel()
    runner.release.set()

    assert await kept == 4
    assert cancelled.cancelled()


@pytest.mark.gen_test
async def test_close_runs_what_is_queued():
    runner = Recorder()
    coalescer = Coalescer(runner, max_size=100, max_delay=LONG_DELAY)

    # gather starts submit first: its item is queued when close runs.
    result, _ = await asyncio.gather(coalescer.submit(3), coalescer.close())

    assert result == 6


def test_rejects_nonsense_limits():
    with pytest.raises(ValueError):
        Coalescer(Recorder(), max_size=0)
    with pytest.raises(ValueError):
        Coalescer(Recorder(), max_delay=-1)
