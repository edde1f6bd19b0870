"""A rollcall process killed with SIGKILL (an OOM kill, a failed deploy, a lost host): what it held
is cleared by a live process, or by itself once restarted, and nothing else is touched. Real
server.py processes with short liveness settings, real python-socketio clients, the real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from tornado.httpclient import AsyncHTTPClient

from server import SHUTDOWN_TIMEOUT
from tests.support.healing import (
    Rollcall,
    alive,
    held,
    raw_participant,
    registered,
    swept_by,
    wait_for,
)
from tests.support.joins import LESSON, Client, participant_token, request, teacher_request

SUCCESS = {"status": "SUCCESS", "data": {}}
TEACHERS = f"lesson_teacher_{LESSON}"
STUDENTS = f"lesson_student_{LESSON}"


class Clients:
    """Every client a test opens, closed at its end."""

    def __init__(self) -> None:
        self.opened: list[Client] = []

    async def teacher(self, url: str, user_id: str, secret: str) -> Client:
        client = await self._open(url)
        assert await client.join(teacher_request(user_id, secret)) == SUCCESS
        return client

    async def participant(self, url: str, client_id: str, secret: str) -> Client:
        client = await self._open(url)
        token = participant_token(client_id, secret)
        assert await client.join(request(user_id=client_id, access_token=token)) == SUCCESS
        return client

    async def _open(self, url: str) -> Client:
        client = Client(url, "websocket")
        self.opened.append(client)
        return await client.connect()

    async def close(self) -> None:
        await asyncio.gather(*(client.close() for client in self.opened))


@contextlib.asynccontextmanager
async def running(
    redis_url: str, database_url: str, secret: str, count: int, *flags: str
) -> AsyncIterator[tuple[list[Rollcall], Clients]]:
    """`count` server.py processes (with `flags` besides the short liveness settings), and the
    clients the test opens; all stopped at the end."""
    processes = [
        await Rollcall.start(redis_url, database_url, secret, *flags) for _ in range(count)
    ]
    clients = Clients()
    try:
        yield processes, clients
    finally:
        await clients.close()
        for process in processes:
            await process.stop()


def swept(db: redis.Redis, process_id: str) -> bool:
    """Whether `process_id`'s sweep has finished: its held record and registration gone."""
    return not db.exists(f"rollcall:held:{process_id}") and process_id not in registered(db)


async def scrape(url: str, name: str, **labels: str) -> float:
    """The value of one sample of a process's /metrics."""
    response = await AsyncHTTPClient().fetch(url + "/metrics")
    for family in text_string_to_metric_families(response.body.decode()):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    raise AssertionError(f"{name}{labels} not in /metrics")


@pytest.mark.gen_test(timeout=60)
async def test_sigkill_with_a_live_peer(lesson, redis_db, redis_url, database_url, secret):
    async with running(redis_url, database_url, secret, 2) as ((a, b), clients):
        await clients.teacher(a.url, "t1", secret)
        c1 = await clients.participant(a.url, "c1", secret)
        await clients.participant(a.url, "c2", secret)
        t2 = await clients.teacher(b.url, "t2", secret)
        c3 = await clients.participant(b.url, "c3", secret)
        # c1 also has a tab on b, older than its tab on a: a's sid owns c1's entry
        await clients.participant(b.url, "c1", secret)
        token = participant_token("c1", secret)
        assert await c1.join(request(user_id="c1", access_token=token)) == SUCCESS
        assert redis_db.hget(STUDENTS, "c1") == c1.sid
        dead, survivor = a.process_id, b.process_id
        # t1's entry; c1's and c2's, each with its roster record
        assert len(held(redis_db, dead)) == 5
        b_held = held(redis_db, survivor)
        assert registered(redis_db) == {dead, survivor}

        await a.stop()  # SIGKILL
        await wait_for(lambda: swept(redis_db, dead), "the sweep of the killed process")

        assert redis_db.hgetall(TEACHERS) == {"t2": t2.sid}
        assert redis_db.hgetall(STUDENTS) == {"c3": c3.sid}
        assert redis_db.hget("c2", "sid") == ""
        # c1's key named a's sid: cleared; its tab on b owns nothing until it joins again
        assert redis_db.hget("c1", "sid") == ""
        assert redis_db.hgetall("t1") == {"lesson_id": LESSON}
        assert held(redis_db, survivor) == b_held
        assert registered(redis_db) == {survivor} and alive(redis_db, survivor)
        assert swept_by(redis_db, dead) == survivor
        # the log line follows the sweep's last script run
        [line] = await wait_for(lambda: b.lines_with("swept dead process"), "the sweep's line")
        assert f"process_id={dead}" in line and "entries=5" in line and "ghosts=3" in line
        assert "rosters=2" in line
        assert await scrape(b.url, "rollcall_processes_swept_total") == 1
        assert await scrape(b.url, "rollcall_ghosts_swept_total") == 3


@pytest.mark.gen_test(timeout=60)
async def test_sigkill_and_restart_alone(lesson, redis_db, redis_url, database_url, secret):
    async with running(redis_url, database_url, secret, 1) as ((a,), clients):
        await clients.teacher(a.url, "t1", secret)
        await clients.participant(a.url, "c1", secret)
        dead = a.process_id
        await a.stop()
    # nobody is alive: the ghosts stay until a process runs again
    assert redis_db.hlen(STUDENTS) == redis_db.hlen(TEACHERS) == 1

    async with running(redis_url, database_url, secret, 1) as ((restarted,), clients):
        await wait_for(lambda: swept(redis_db, dead), "the restarted process's sweep")
        assert not redis_db.exists(STUDENTS, TEACHERS)
        assert redis_db.hget("c1", "sid") == ""
        assert swept_by(redis_db, dead) == restarted.process_id
        assert registered(redis_db) == {restarted.process_id}
        # and it serves as before
        c1 = await clients.participant(restarted.url, "c1", secret)
        assert redis_db.hgetall(STUDENTS) == {"c1": c1.sid}


@pytest.mark.gen_test(timeout=60)
async def test_two_processes_racing_to_sweep_the_same_dead_one(
    lesson, redis_db, redis_url, database_url, secret
):
    async with running(redis_url, database_url, secret, 3) as ((a, b, c), clients):
        for n in range(5):
            await clients.participant(a.url, f"c{n}", secret)
        dead = a.process_id

        await a.stop()
        await wait_for(lambda: swept(redis_db, dead), "the sweep of the killed process")

        lines = await wait_for(
            lambda: b.lines_with("swept dead process") + c.lines_with("swept dead process"),
            "the sweep's line",
        )
        assert len(lines) == 1 and "ghosts=5" in lines[0]
        winner = b if b.lines_with("swept dead process") else c
        assert swept_by(redis_db, dead) == winner.process_id
        assert not redis_db.exists(STUDENTS)
        swept_totals = [await scrape(p.url, "rollcall_processes_swept_total") for p in (b, c)]
        assert sorted(swept_totals) == [0, 1]


@pytest.mark.gen_test(timeout=60)
async def test_a_comeback_on_another_process_racing_the_sweep_keeps_its_new_sid(
    lesson, redis_db, redis_url, database_url, secret
):
    count = 12
    async with running(redis_url, database_url, secret, 2) as ((a, b), clients):
        for n in range(count):
            await clients.participant(a.url, f"c{n}", secret)
        await clients.teacher(a.url, "t1", secret)
        dead = a.process_id

        await a.stop()
        # a third come back at once, a third the moment a's liveness lapses (as b's sweep
        # starts), the rest never
        early = [await clients.participant(b.url, f"c{n}", secret) for n in range(0, 4)]
        await wait_for(lambda: not alive(redis_db, dead), "the killed process's lapse")
        racing = await asyncio.gather(
            *(clients.participant(b.url, f"c{n}", secret) for n in range(4, 8)),
            clients.teacher(b.url, "t1", secret),
        )
        await wait_for(lambda: swept(redis_db, dead), "the sweep of the killed process")

        back = {f"c{n}": client.sid for n, client in enumerate([*early, *racing[:-1]])}
        assert redis_db.hgetall(STUDENTS) == back
        assert redis_db.hgetall(TEACHERS) == {"t1": racing[-1].sid}
        for n in range(count):
            assert redis_db.hget(f"c{n}", "sid") == back.get(f"c{n}", "")
        # each comeback's entry and roster record, and t1's entry
        assert len(held(redis_db, b.process_id)) == 2 * len(back) + 1


@pytest.mark.gen_test(timeout=60)
async def test_a_graceful_stop_leaves_no_record_to_sweep(
    lesson, redis_db, redis_url, database_url, secret
):
    async with running(redis_url, database_url, secret, 1, "--handover-grace", "0") as ((a,), _):
        c1 = await raw_participant(a.url, "c1", secret)  # leaves no client task behind
        pid = a.process_id
        assert alive(redis_db, pid) and held(redis_db, pid)

        a.server.proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(SHUTDOWN_TIMEOUT):
            assert await a.server.proc.wait() == 0
        c1.close()

        assert not redis_db.exists(STUDENTS)
        assert not alive(redis_db, pid) and not held(redis_db, pid)
        assert registered(redis_db) == set()
        assert swept_by(redis_db, pid) == pid  # its own marker: a late write would be refused
        [retired] = await wait_for(lambda: a.lines_with("retired"), "the retired line")
        assert f"process_id={pid}" in retired
