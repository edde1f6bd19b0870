"""SIGTERM while Redis is unreachable (a network partition: nothing the process sends arrives):
the shutdown cannot clear what the process holds, so it must not wait for Redis past its
deadline. It exits 0 within SHUTDOWN_TIMEOUT, saying that a survivor will sweep its records,
and a process started later does sweep them."""

from __future__ import annotations

import asyncio
import signal

import pytest

from server import SHUTDOWN_TIMEOUT
from tests.integration.healing.test_crash import STUDENTS, Clients, running, swept
from tests.support.healing import RedisPartition, Rollcall, held, swept_by, wait_for

#: short, so that the leaves and the retirement give up well within the shutdown's deadline
STORE_TIMEOUT = ("--store-timeout", "0.5")


@pytest.mark.gen_test(timeout=60)
async def test_sigterm_while_redis_is_unreachable_exits_0_and_a_later_process_sweeps(
    lesson, redis_db, redis_url, database_url, secret
):
    clients = Clients()
    async with RedisPartition.open(redis_url) as partition:
        leaving = await Rollcall.start(partition.url, database_url, secret, *STORE_TIMEOUT)
        try:
            c1 = await clients.participant(leaving.url, "c1", secret)
            sid, dead = c1.sid, leaving.process_id
            assert set(held(redis_db, dead).values()) == {sid}  # c1's entry and roster record

            partition.cut()
            loop = asyncio.get_running_loop()
            started = loop.time()
            leaving.server.proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(SHUTDOWN_TIMEOUT):
                returncode = await leaving.server.proc.wait()
            elapsed = loop.time() - started
        finally:
            await clients.close()
            await leaving.stop()

    output = leaving.output.decode()
    assert returncode == 0, output
    assert elapsed < SHUTDOWN_TIMEOUT
    [line] = leaving.lines_with("a survivor will sweep them")
    assert "WARNING" in line
    assert leaving.lines_with("stopped")
    # nothing reached Redis: c1's presence and the held record are as they were
    assert redis_db.hget(STUDENTS, "c1") == sid and redis_db.hget("c1", "sid") == sid
    assert set(held(redis_db, dead).values()) == {sid}

    async with running(redis_url, database_url, secret, 1) as ((later,), _):
        await wait_for(lambda: swept(redis_db, dead), "the later process's sweep")
        assert swept_by(redis_db, dead) == later.process_id
        assert not redis_db.exists(STUDENTS) and redis_db.hget("c1", "sid") == ""
        [swept_line] = await wait_for(lambda: later.lines_with("swept dead process"), "its line")
        assert f"process_id={dead}" in swept_line and "ghosts=1" in swept_line
