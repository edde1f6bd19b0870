"""logs.BatchingStreamHandler: the lines of one loop turn reach the file together when the turn
ends; nothing waits longer than that, and nothing waiting is lost, at close or at exit."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvloop

import logs
from tests.support import ROOT

Runner = Callable[[Coroutine[Any, Any, Any]], Any]
RUNNERS: dict[str, Runner] = {"asyncio": asyncio.run, "uvloop": uvloop.run}
SUBPROCESS_TIMEOUT = 30


@dataclass
class Log:
    """A logger whose only handler batches into a block-buffered file: what `written()` reads
    from the file got there through the handler's own writes and flushes."""

    path: Path
    logger: logging.Logger
    handler: logs.BatchingStreamHandler

    def written(self) -> list[str]:
        return self.path.read_text().splitlines()


@pytest.fixture
def log(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Log]:
    path = tmp_path / "rollcall.log"
    with path.open("w") as stream:
        handler = logs.BatchingStreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        logger = logging.getLogger(f"test.batching.{request.node.name}")
        logger.propagate = False
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        yield Log(path, logger, handler)
        logger.removeHandler(handler)
        handler.close()


@pytest.fixture(params=list(RUNNERS))
def run(request: pytest.FixtureRequest) -> Runner:
    return RUNNERS[request.param]


def test_the_lines_of_a_turn_are_written_together_when_it_ends(log: Log, run: Runner) -> None:
    async def turn() -> tuple[list[str], list[str]]:
        for n in range(3):
            log.logger.info("line %d", n)
        during = log.written()
        await asyncio.sleep(0)  # the turn ends
        return during, log.written()

    during, after = run(turn())
    assert during == []
    assert after == ["INFO line 0", "INFO line 1", "INFO line 2"]


def test_a_warning_is_written_at_once_after_what_waited(log: Log, run: Runner) -> None:
    async def turn() -> list[str]:
        log.logger.info("joined")
        log.logger.warning("heartbeat: redis is not answering")
        return log.written()

    assert run(turn()) == ["INFO joined", "WARNING heartbeat: redis is not answering"]


def test_a_line_logged_with_no_loop_running_is_written_at_once(log: Log) -> None:
    log.logger.info("rollcall listening")
    assert log.written() == ["INFO rollcall listening"]


def test_a_line_logged_in_another_thread_is_written_at_once(log: Log, run: Runner) -> None:
    async def turn() -> list[str]:
        log.logger.info("from the loop")
        thread = threading.Thread(target=log.logger.info, args=("from a thread",))
        thread.start()
        thread.join()
        return log.written()

    assert run(turn()) == ["INFO from the loop", "INFO from a thread"]


def test_no_more_than_max_pending_lines_wait(log: Log, run: Runner) -> None:
    async def turn() -> tuple[int, int]:
        for n in range(logs.MAX_PENDING_LINES):
            log.logger.info("line %d", n)
        at_the_cap = len(log.written())
        log.logger.info("one more")
        return at_the_cap, len(log.written())

    assert run(turn()) == (logs.MAX_PENDING_LINES, logs.MAX_PENDING_LINES)


@pytest.mark.parametrize("end", ["flush", "close"])
def test_flush_and_close_write_what_waits(log: Log, run: Runner, end: str) -> None:
    async def turn() -> list[str]:
        log.logger.info("waiting")
        getattr(log.handler, end)()
        return log.written()

    assert run(turn()) == ["INFO waiting"]


def test_a_loop_closed_before_its_flush_ran_leaves_no_line_behind(log: Log) -> None:
    # asyncio's loop, stopped, ends its turn without running what the turn scheduled (uvloop's
    # runs it): this line's flush never runs.
    loop = asyncio.new_event_loop()

    def last_turn() -> None:
        log.logger.info("in the last turn")
        loop.stop()

    loop.call_soon(last_turn)
    loop.run_forever()
    loop.close()
    assert log.written() == []
    log.logger.info("after the loop")
    assert log.written() == ["INFO in the last turn", "INFO after the loop"]

    async def next_loop() -> list[str]:
        log.logger.info("in the next loop")
        await asyncio.sleep(0)
        return log.written()

    # the next loop gets a flush of its own, though the closed one's is still expected
    assert asyncio.run(next_loop())[-1] == "INFO in the next loop"


def test_a_failed_write_is_reported_by_logging_not_the_loop(
    log: Log, run: Runner, capsys: pytest.CaptureFixture
) -> None:
    loop_errors: list[dict[str, Any]] = []

    async def turn() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _, context: loop_errors.append(context))
        log.handler.stream.close()
        log.logger.info("lost with its stream")
        await asyncio.sleep(0)

    run(turn())
    err = capsys.readouterr().err
    assert "--- Logging error ---" in err
    assert "I/O operation on closed file" in err
    assert "lost with its stream" in err  # logging names the record it could not write
    assert loop_errors == []


# The line is logged in the loop's last turn and the loop closed before its flush runs, so only
# logging.shutdown() at exit can write it.
EXIT_SCRIPT = """
import asyncio, logging, sys
import logs
logs.configure("INFO", "json")
loop = asyncio.new_event_loop()

def last_turn():
    logging.getLogger("exit").info("logged in the last turn")
    loop.stop()

loop.call_soon(last_turn)
loop.run_forever()
loop.close()
if sys.argv[1] == "crash":
    raise RuntimeError("uncaught at exit")
"""


@pytest.mark.parametrize(("how", "status"), [("clean", 0), ("crash", 1)])
def test_a_line_still_waiting_at_exit_is_written(how: str, status: int) -> None:
    result = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT, how],
        cwd=ROOT, stderr=subprocess.PIPE, text=True, timeout=SUBPROCESS_TIMEOUT, check=False,
    )
    assert result.returncode == status, result.stderr
    assert '"message":"logged in the last turn"' in result.stderr
    assert ("RuntimeError: uncaught at exit" in result.stderr) == (how == "crash")
