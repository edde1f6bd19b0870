"""Fixtures of the lifecycle tests: those of tests/join_lesson (the real app with Mixpanel on a
local endpoint, python-socketio clients, a lesson), and a log of the server's own events."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from join_lesson.conftest import (  # noqa: F401 - fixtures, reused as they are
    config,
    connect,
    keyspace_events,
    lesson,
    mixpanel_events,
    mixpanel_url,
    secret,
    transport,
    url,
)

from .helpers import ServerEvents


@pytest.fixture
def server_events(io_loop) -> Iterator[ServerEvents]:
    """The join and disconnect lines the server logs, to await them (never sleep for them)."""
    events = ServerEvents()
    logger = logging.getLogger("rollcall")
    previous = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(events)
    yield events
    logger.removeHandler(events)
    logger.setLevel(previous)
