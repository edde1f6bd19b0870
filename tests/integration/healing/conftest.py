"""Fixtures of the healing tests: those of tests/integration/join_lesson (a lesson, the token
secret, the app served in-process and its clients), and a stall of the suite's own Redis
(SIGSTOP, then SIGCONT at the latest at teardown)."""

from __future__ import annotations

import os
import pathlib
import signal
from collections.abc import Iterator

import pytest
import redis

from tests.integration.join_lesson.conftest import (  # noqa: F401 - fixtures, reused as they are
    config,
    connect,
    lesson,
    mixpanel_events,
    mixpanel_url,
)
from tests.integration.lifecycle.conftest import server_events  # noqa: F401 - fixture, reused as it is


@pytest.fixture
def transport() -> str:
    return "websocket"


class RedisStall:
    """Freezes the Redis that `make test` started for this run (its pid file is in the run's
    services directory, and it must answer on the run's port), as a stalled host would."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.stalled = False

    def begin(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)
        self.stalled = True

    def end(self) -> None:
        if self.stalled:
            os.kill(self.pid, signal.SIGCONT)
            self.stalled = False


@pytest.fixture
def redis_stall(services_dir: pathlib.Path, redis_db: redis.Redis) -> Iterator[RedisStall]:
    pid = int((services_dir / "redis.pid").read_text())
    # the pid file belongs to the Redis this run's clients talk to
    assert redis_db.info("server")["process_id"] == pid
    stall = RedisStall(pid)
    try:
        yield stall
    finally:
        stall.end()
