"""Run a coroutine at once, and make a task of it only if it has to wait.

Many event handlers finish without waiting for anything (an echo, a request refused by its
validation, an ack callback); a task for each costs a loop iteration and a few allocations per
message, which is a measurable share of a message's cost here. Python 3.12's
``asyncio.eager_task_factory`` does this for every task of a loop; on 3.11 we do it for our own
dispatch only. Everything up to the coroutine's first suspension runs inside the caller's call.

One difference from 3.12's eager tasks: until that first suspension there is no task of its own,
so ``asyncio.current_task()`` is the caller's (over a WebSocket, Tornado's frame loop), and an
``asyncio.timeout`` entered there would cancel the caller's task when it expires. rollcall's
handlers enter none before their first wait (their timeouts are in the stores' batch tasks);
a handler that needs one at its very start should use ``asyncio.wait_for``.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Coroutine, Generator
from typing import Any


def start(
    coro: Coroutine[Any, Any, Any], tasks: set[asyncio.Task[Any]]
) -> asyncio.Task[Any] | None:
    """Run ``coro`` until it first waits; if it does, finish it in a task kept in ``tasks``
    (the loop holds tasks weakly) until it is done, and return that task (None: done already)."""
    try:
        waiting_on = coro.send(None)
    except StopIteration:
        return None
    task = asyncio.get_running_loop().create_task(_finish(coro, waiting_on))
    tasks.add(task)

    def done(task: asyncio.Task[Any]) -> None:
        tasks.discard(task)
        # A no-op once coro returned; if the task was cancelled before it first ran, this runs
        # coro's cleanup (its finally blocks) rather than leaving that to the garbage collector.
        coro.close()

    task.add_done_callback(done)
    return task


async def _finish(coro: Coroutine[Any, Any, Any], waiting_on: Any) -> Any:
    return await _resume(coro, waiting_on)


@types.coroutine
def _resume(coro: Coroutine[Any, Any, Any], waiting_on: Any) -> Generator[Any, Any, Any]:
    """Hand what ``coro`` waits on to the task running this, and what the task sends or throws
    (a cancellation) back to ``coro``, until it returns."""
    while True:
        try:
            sent = yield waiting_on
        except BaseException as exc:  # forwarded to coro, not handled here
            step = coro.throw
            value: Any = exc
        else:
            step = coro.send
            value = sent
        try:
            waiting_on = step(value)
        except StopIteration as stop:
            return stop.value
