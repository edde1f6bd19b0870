"""store/aiopg_compat.py: a refused PostgreSQL connection must not poison its descriptor number.

The workaround is installed by server.setup_process, which the suite's `process_setup` fixture
runs as main() does."""

from __future__ import annotations

import asyncio
import socket

import pytest
import uvloop

from store.errors import StoreUnavailable
from store.lessons import LessonStore

REFUSED = "postgresql://rollcall@127.0.0.1:1/rollcall"


async def refused_connects_then_watch_new_sockets() -> None:
    store = await LessonStore.open(REFUSED, 2.0)
    loop = asyncio.get_running_loop()
    try:
        for _ in range(3):
            with pytest.raises(StoreUnavailable):
                await store.ping()
            with socket.socket() as sock:
                sock.setblocking(False)
                loop.add_reader(sock.fileno(), lambda: None)
                loop.remove_reader(sock.fileno())
    finally:
        await store.close()


@pytest.mark.parametrize("loop_factory", [uvloop.new_event_loop, asyncio.new_event_loop])
def test_aiopg_connection_ready_patch_leaves_no_watcher_after_a_refusal(loop_factory) -> None:
    """aiopg `Connection._ready` and `_fileno` (store/aiopg_compat.py): fails when a release
    changes either, or if the bug is back (aio-libs/aiopg#909): "UVPoll closed"."""
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(refused_connects_then_watch_new_sockets())
