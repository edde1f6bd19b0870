"""Redis and PostgreSQL stopped and restarted under steady join traffic, with the server running.

During the outage joins answer UNAVAILABLE within --store-timeout, /healthz answers 503 naming
the backend, and the process keeps serving; after the restart joins succeed again on the same
connections, without restarting the server. No join is ever half applied: each one's presence
keys are all there or none are.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import jwt
import pytest
import redis

from config import Config
from tests.support import TEST_TOKEN_SECRET
from tests.support.peers import LESSON, Peer, connect, join, open_peer, teacher
from tests.support.raw_peers import fetch

WORKERS = ("websocket", "polling", "websocket", "polling")
ENOUGH = 8  # acks of a kind to see in each phase
# An UNAVAILABLE answer may take --store-timeout, plus the time to get the ack back.
ANSWER_MARGIN = 0.5
BEFORE, DURING, AFTER = "before", "during", "after"


@dataclass
class Attempt:
    """One join sent by the traffic, and how it was answered."""

    role: str
    ident: str  # the teacher's user id, or the participant's client id
    sid: str
    phase: str  # when it was sent
    code: str = ""
    seconds: float = 0.0


class Traffic:
    """Workers joining in a loop, each join under fresh ids, alternating teachers and
    participants; the test moves them from phase to phase and awaits what they saw."""

    def __init__(self) -> None:
        self.phase = BEFORE
        self.attempts: list[Attempt] = []
        self._stopped = False
        self._changed = asyncio.Event()
        self._ids = itertools.count()

    async def worker(self, peer: Peer, sid: str) -> None:
        for ack_id in itertools.count():
            if self._stopped:
                return
            n = next(self._ids)
            if n % 2:
                attempt = Attempt("teacher", f"t-{n}", sid, self.phase)
                request = teacher(attempt.ident)
            else:
                attempt = Attempt("student", f"c-{n}", sid, self.phase)
                token = jwt.encode({"client_id": attempt.ident}, TEST_TOKEN_SECRET)
                request = {"user_id": f"u-{n}", "lesson_id": LESSON, "access_token": token,
                           "role": "student"}
            started = time.monotonic()
            ack = await join(peer, request, ack_id)
            attempt.seconds = time.monotonic() - started
            attempt.code = ack["status"] if ack["status"] == "SUCCESS" else ack["data"]["code"]
            self.attempts.append(attempt)
            self._changed.set()

    def count(self, phase: str, code: str) -> int:
        return sum(a.phase == phase and a.code == code for a in self.attempts)

    async def wait_for(self, condition: Callable[[], bool]) -> None:
        while not condition():
            self._changed.clear()
            await self._changed.wait()

    def stop(self) -> None:
        self._stopped = True


def presence(db: redis.Redis, attempt: Attempt) -> tuple[bool, bool]:
    """Whether each of the attempt's two presence entries holds it."""
    if attempt.role == "teacher":
        return (
            db.hget(f"lesson_teacher_{LESSON}", attempt.ident) == attempt.sid,
            db.hget(attempt.ident, "lesson_id") == LESSON,
        )
    return (
        db.hgetall(attempt.ident)
        == {"sid": attempt.sid, "client_id": attempt.ident, "role": "student"},
        db.hget(f"lesson_student_{LESSON}", attempt.ident) == attempt.sid,
    )


async def health(url: str) -> tuple[int, dict]:
    response = await fetch(url.replace("/socket.io/", "/healthz"))
    return response.code, json.loads(response.body)


async def run_outage(url: str, outage, backend: str, config: Config) -> Traffic:
    """Steady traffic; stop `backend`; check the server during the outage; restart it; wait
    for joins to succeed again. Returns the traffic for the checks on Redis."""
    traffic = Traffic()
    peers = [await open_peer(url, transport) for transport in WORKERS]
    workers = [asyncio.ensure_future(traffic.worker(p, await connect(p))) for p in peers]
    try:
        await traffic.wait_for(lambda: traffic.count(BEFORE, "SUCCESS") >= ENOUGH)

        traffic.phase = DURING
        await asyncio.to_thread(outage.begin)
        await traffic.wait_for(lambda: traffic.count(DURING, "UNAVAILABLE") >= ENOUGH)
        code, body = await health(url)
        assert code == 503 and body["status"] == "unavailable"
        assert body[backend] != "ok" and all(v == "ok" for k, v in body.items()
                                             if k not in (backend, "status"))
        newcomer = await open_peer(url, "websocket")  # still accepting and answering
        await connect(newcomer)
        assert (await join(newcomer, teacher()))["data"]["code"] == "UNAVAILABLE"
        newcomer.close()

        await asyncio.to_thread(outage.end)
        traffic.phase = AFTER
        await traffic.wait_for(lambda: traffic.count(AFTER, "SUCCESS") >= ENOUGH)
        assert await health(url) == (200, {"status": "ok", "redis": "ok", "postgres": "ok"})
    finally:
        traffic.stop()
        await asyncio.gather(*workers, return_exceptions=True)
    for worker in workers:
        worker.result()  # no worker failed (a connection lost would show here)

    codes = {a.code for a in traffic.attempts}
    assert codes <= {"SUCCESS", "UNAVAILABLE"}, codes
    slowest = max(a.seconds for a in traffic.attempts if a.code == "UNAVAILABLE")
    assert slowest < config.store_timeout + ANSWER_MARGIN
    for peer in peers:
        peer.close()
    return traffic


@pytest.mark.gen_test(timeout=60)
async def test_redis_outage(url, lesson, redis_db, redis_outage, config) -> None:
    traffic = await run_outage(url, redis_outage, "redis", config)

    # Redis restarted empty (no persistence here): what was written before is gone. Every join
    # since holds all of its keys or none (a join whose answer was lost in the outage may have
    # run in full), and every join acknowledged after the restart holds all of them.
    for attempt in traffic.attempts:
        entries = presence(redis_db, attempt)
        assert entries[0] == entries[1], attempt
        if attempt.phase == AFTER and attempt.code == "SUCCESS":
            assert all(entries), attempt
    assert redis_db.exists(f"lesson_seat_{LESSON}")


@pytest.mark.gen_test(timeout=60)
async def test_postgres_outage(url, lesson, redis_db, postgres_outage, config) -> None:
    traffic = await run_outage(url, postgres_outage, "postgres", config)

    # A join that found PostgreSQL down never reached Redis; every acknowledged one is whole.
    for attempt in traffic.attempts:
        entries = presence(redis_db, attempt)
        if attempt.code == "SUCCESS":
            assert all(entries), attempt
        else:
            assert not any(entries), attempt
