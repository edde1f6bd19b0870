"""The --message-queue flag: off by default, a Redis URL when given, exit 2 on anything else."""

from __future__ import annotations

import pytest

from config import parse_config

QUEUE_URL = "redis://queue.internal:6379/1"


def test_message_queue_is_off_by_default() -> None:
    assert parse_config([], environ={}).message_queue is None


def test_message_queue_from_the_flag_or_the_environment() -> None:
    assert parse_config(["--message-queue", QUEUE_URL], environ={}).message_queue == QUEUE_URL
    environ = {"ROLLCALL_MESSAGE_QUEUE": QUEUE_URL}
    assert parse_config([], environ=environ).message_queue == QUEUE_URL


def test_a_message_queue_that_is_not_redis_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_config(["--message-queue", "amqp://queue.internal"], environ={})
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--message-queue" in err, err
