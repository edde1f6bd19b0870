"""Fixtures of the scale-out tests: the lesson of tests/integration/join_lesson, its token secret,
and python-socketio's own write-only manager, the emitter the platform's other services hold."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import socketio

from tests.integration.join_lesson.conftest import lesson  # noqa: F401 - fixture, reused as it is


@pytest.fixture
def write_only(io_loop, redis_url: str) -> Iterator[socketio.AsyncRedisManager]:
    manager = socketio.AsyncRedisManager(redis_url, write_only=True)
    yield manager
    if manager.redis is not None:
        io_loop.run_sync(manager.redis.aclose)
