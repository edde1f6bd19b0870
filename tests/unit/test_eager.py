"""protocol/eager.py: a coroutine runs at once, and becomes a task only if it waits."""

from __future__ import annotations

import asyncio

import pytest

from protocol import eager


@pytest.mark.gen_test
async def test_a_coroutine_that_never_waits_finishes_inside_the_call() -> None:
    done: list[str] = []

    async def quick() -> None:
        done.append("ran")

    tasks: set[asyncio.Task] = set()
    eager.start(quick(), tasks)

    assert done == ["ran"]
    assert tasks == set()


@pytest.mark.gen_test
async def test_a_coroutine_that_waits_is_finished_by_a_task() -> None:
    gate: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    seen: list[str] = []

    async def slow() -> str:
        seen.append("before")
        seen.append(await gate)
        await asyncio.sleep(0)  # a bare yield, too
        seen.append("after")
        return "result"

    tasks: set[asyncio.Task] = set()
    eager.start(slow(), tasks)
    assert seen == ["before"]
    (task,) = tasks

    gate.set_result("woken")
    assert await task == "result"
    assert seen == ["before", "woken", "after"]
    assert tasks == set()


@pytest.mark.gen_test
async def test_cancelling_the_task_cancels_the_coroutine() -> None:
    cleaned: list[str] = []

    async def waits_forever() -> None:
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            cleaned.append("finally")

    tasks: set[asyncio.Task] = set()
    eager.start(waits_forever(), tasks)
    (task,) = tasks
    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == ["finally"]


@pytest.mark.gen_test
async def test_an_exception_after_the_first_wait_ends_the_task_with_it() -> None:
    async def fails_later() -> None:
        await asyncio.sleep(0)
        raise LookupError("late")

    tasks: set[asyncio.Task] = set()
    eager.start(fails_later(), tasks)
    (task,) = tasks

    with pytest.raises(LookupError, match="late"):
        await task
