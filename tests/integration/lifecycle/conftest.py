"""Fixtures of the lifecycle tests: those of tests/integration/join_lesson (the real app with
Mixpanel on a local endpoint, python-socketio clients, a lesson), and a log of the server's own
events."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests.integration.join_lesson.conftest import (  # noqa: F401 - fixtures, reused as they are
    config,
    connect,
    keyspace_events,
    lesson,
    mixpanel_events,
    mixpanel_url,
    transport,
)
from tests.support.lifecycle import ServerEvents

#: the loggers of the server's own modules (each is named after its module): the handlers log
#: the connect, join and disconnect lines; an error anywhere in them fails a lifecycle test
SERVER_LOGGERS = ("handlers", "server", "tracking")


@pytest.fixture
def server_events(io_loop) -> Iterator[ServerEvents]:
    """The join and disconnect lines the server logs, to await them (never sleep for them)."""
    events = ServerEvents()
    loggers = [logging.getLogger(name) for name in SERVER_LOGGERS]
    previous = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.INFO)
        logger.addHandler(events)
    yield events
    for logger, level in zip(loggers, previous, strict=True):
        logger.removeHandler(events)
        logger.setLevel(level)
