"""`make demo` (scripts/demo.py, run as it is) when it cannot fill the class: each way ends with
exit status 1 and one line that says why, and leaves no one in the lesson."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import psycopg2
import pytest

from tests.integration.operations.conftest import ADMIN_TOKEN, admin_get
from tests.support import ROOT, TEST_TOKEN_SECRET, free_port
from tests.support.scripts import DEMO_SQL, ScriptProcess

DEMO_LESSON = "demo-lesson"
#: the demo connects, joins and reads the roll call: seconds for all of it to fail
DEMO_TIMEOUT = 30.0


async def demo(*argv: str, secret: str = TEST_TOKEN_SECRET) -> tuple[int, str]:
    """scripts/demo.py's exit status and output."""
    process = await ScriptProcess.start(
        ROOT, sys.executable, "scripts/demo.py", *argv,
        env={**os.environ, "ACCESS_TOKEN_SECRET": secret},
    )
    async with asyncio.timeout(DEMO_TIMEOUT):
        code = await process.ended()
    return code, process.out


@pytest.fixture
def demo_class(database: psycopg2.extensions.connection) -> str:
    with database.cursor() as cur:
        cur.execute(DEMO_SQL.read_text())
    return DEMO_LESSON


@pytest.mark.gen_test(timeout=60)
async def test_tokens_of_another_secret_stop_the_demo_at_the_teachers_join(
    url: str, redis_url: str, demo_class: str
) -> None:
    code, out = await demo("--url", url, "--redis-url", redis_url, "--admin-token", ADMIN_TOKEN,
                           secret="not-the-servers-secret-but-as-long-as-one-0123")
    assert code == 1
    line, = out.splitlines()
    prefix = "demo: ms-rivera's join answered "
    assert line.startswith(prefix), line
    ack = json.loads(line.removeprefix(prefix))
    assert (ack["status"], ack["data"]["code"]) == ("ERROR", "INVALID_TOKEN")
    roll_call = json.loads((await admin_get(url, f"/lessons/{demo_class}")).body)
    assert (roll_call["teachers"], roll_call["counts"]["present"]) == ([], 0)


@pytest.mark.gen_test(timeout=60)
async def test_a_wrong_admin_token_is_named(url: str, redis_url: str, demo_class: str) -> None:
    code, out = await demo("--url", url, "--redis-url", redis_url,
                           "--admin-token", "not-the-admin-token-0123")
    assert (code, out.splitlines()) == (1, [
        "demo: GET /lessons/demo-lesson answered 401: is this the admin token of the running "
        "server (--admin-token)?"
    ])


@pytest.mark.gen_test(timeout=60)
async def test_no_server_says_to_start_make_run(redis_url: str) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    code, out = await demo("--url", closed, "--redis-url", redis_url, "--admin-token", ADMIN_TOKEN)
    assert code == 1
    assert len(out.splitlines()) == 1 and out.startswith(f"demo: no rollcall at {closed} ("), out
    assert out.rstrip().endswith("): start it with `make run`"), out
