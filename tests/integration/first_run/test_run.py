"""`make run` (scripts/run.sh) for real, in a fresh clone under a closed folder (mode 700, as /root
is): its banner's live view URL answers 200 with the seating chart, `make demo` (scripts/demo.py)
fills the class and leaves the roll call in the state the issue describes, and Ctrl-C (SIGINT to
the whole foreground group, as a terminal sends it) leaves no Redis, PostgreSQL or server
process."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import re
import subprocess
from collections.abc import Iterator

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPResponse

from tests.support import ROOT, TEST_TOKEN_SECRET, free_port
from tests.support.clones import clone, closed_home, ends_within
from tests.support.scripts import DEMO_READY, ScriptProcess

#: seconds for make run to print its banner and serve (it may have to run initdb first)
START_TIMEOUT = 60.0
STEP_TIMEOUT = 30.0
#: make run's Ctrl-C: the server's shutdown, then both databases stopped
STOP_TIMEOUT = 30.0
#: environment the suite runs with that would point make run at the suite's own services
SUITE_ENVIRONMENT = ("REDIS_URL", "DATABASE_URL", "ADMIN_TOKEN", "REDIS_PORT", "PG_PORT")
LESSON = "demo-lesson"
VIEW_URL = re.compile(r"^\s+(http://\S+/lessons/demo-lesson/view\?token=\S+)$", re.MULTILINE)
CSV_URL = re.compile(r"^\s+(http://\S+/lessons/demo-lesson/attendance\.csv)$", re.MULTILINE)
BEARER = re.compile(r'-H "Authorization: Bearer (\S+)"')
DEMO_HINT = "`make demo`"
SUCCESS_ACK = 'ack {"status": "SUCCESS", "data": {}}'
#: the demo class after `make demo`, by scripts/demo.sql and scripts/demo.py: (status, reconnects)
EXPECTED_ROLL_CALL = {
    **{user: ("present", 0) for user in (
        "ada", "chen", "dana", "emil", "goran", "hana", "ivan", "jana", "kofi", "mateo", "nia",
        "priya", "quinn", "sami", "tara", "vera", "wen", "xavi")},
    "umar": ("present", 1),  # left, then came back on a new connection
    **{user: ("left", 0) for user in ("ben", "oscar")},
    **{user: ("absent", 0) for user in ("fatima", "lena", "rosa", "yara", "zoe")},
}
UNSEATED = {"xavi", "zoe"}
OUTSIDER = "guest"
TEACHER = "ms-rivera"


@pytest.fixture
def clone_dir() -> Iterator[pathlib.Path]:
    """A fresh clone under a closed folder, sharing this checkout's virtualenv (make run would
    make its own: minutes)."""
    with closed_home() as home:
        rc = clone(home / "rollcall")
        (rc / ".venv").symlink_to(ROOT / ".venv")
        yield rc
        # whatever the test's outcome, the clone's services go, with the cluster's folder
        subprocess.run([rc / "scripts" / "services.sh", "remove", rc / ".run" / "dev"], check=True)


def children(pid: int) -> list[int]:
    return [int(child) for child in
            pathlib.Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


async def get(url: str, headers: dict[str, str] | None = None) -> HTTPResponse:
    return await AsyncHTTPClient().fetch(url, headers=headers, raise_error=False,
                                         follow_redirects=False)


async def open_view(view_url: str) -> HTTPResponse:
    """The view as a browser opens it: the token in the query is swapped for a cookie by a
    redirect, then the page itself."""
    redirect = await get(view_url)
    assert redirect.code == 303, redirect.body
    cookie = redirect.headers["Set-Cookie"].split(";")[0]
    location = redirect.headers["Location"]
    return await get(view_url.split("/lessons/")[0] + location, {"Cookie": cookie})


@pytest.mark.gen_test(timeout=180)
async def test_make_run_in_a_closed_folder_serves_the_chart_and_make_demo_fills_it(
    clone_dir: pathlib.Path,
) -> None:
    env = {name: value for name, value in os.environ.items() if name not in SUITE_ENVIRONMENT}
    env.update(ACCESS_TOKEN_SECRET=TEST_TOKEN_SECRET, ROLLCALL_PORT=str(free_port()),
               DEV_REDIS_PORT=str(free_port()), DEV_PG_PORT=str(free_port()))
    run = await ScriptProcess.start(clone_dir, "scripts/run.sh", env=env)
    demo = None
    try:
        async with asyncio.timeout(START_TIMEOUT):
            banner = await run.wait_for("rollcall listening")
        view_url = VIEW_URL.search(banner)
        csv_url = CSV_URL.search(banner)
        bearer = BEARER.search(banner)
        assert view_url and csv_url and bearer and DEMO_HINT in banner, banner
        page = await open_view(view_url[1])
        assert page.code == 200
        assert b'<ol id="chart" class="chart">' in page.body
        headers = {"Authorization": f"Bearer {bearer[1]}"}
        csv = await get(csv_url[1], headers)
        assert (csv.code, csv.headers["Content-Type"].split(";")[0]) == (200, "text/csv")

        demo = await ScriptProcess.start(clone_dir, ".venv/bin/python", "scripts/demo.py", env=env)
        async with asyncio.timeout(STEP_TIMEOUT):
            printed = await demo.wait_for(DEMO_READY)
        assert printed.count(SUCCESS_ACK) == 4, printed  # teacher, students, guest, comeback
        assert "21 x " + SUCCESS_ACK in printed
        assert f"The live seating chart: {view_url[1]}" in printed
        lesson_url = csv_url[1].removesuffix("/attendance.csv")
        document = json.loads((await get(lesson_url, headers)).body)
        rows = {row["user_id"]: row for row in document["roster"]}
        assert {user: (row["status"], row["reconnects"]) for user, row in rows.items()
                if row["enrolled"]} == EXPECTED_ROLL_CALL
        assert {user for user, row in rows.items() if row["seat"] is None and row["enrolled"]
                } == UNSEATED
        assert (rows[OUTSIDER]["enrolled"], rows[OUTSIDER]["status"]) == (False, "present")
        assert document["counts"] == {"enrolled": 26, "present": 19, "left": 2, "absent": 5}
        assert document["teachers"][0]["user_id"] == TEACHER
        assert document["seat_count"] == 28

        demo.interrupt()
        async with asyncio.timeout(STEP_TIMEOUT):
            assert await demo.ended() == 0, demo.out
        after = json.loads((await get(lesson_url, headers)).body)
        assert (after["counts"]["present"], after["teachers"]) == (0, [])

        run_dir = clone_dir / ".run" / "dev"
        pids = {
            "redis": int((run_dir / "redis.pid").read_text()),
            "postgres": int((run_dir / "pg" / "postmaster.pid").read_text().split()[0]),
            "server": children(run.proc.pid)[0],
        }
        run.interrupt()
        async with asyncio.timeout(STOP_TIMEOUT):
            assert await run.ended() == 0, run.out
        assert {name: ends_within(pid, STOP_TIMEOUT) for name, pid in pids.items()} == {
            name: True for name in pids
        }
        assert not (run_dir / "run.json").exists()
    finally:
        for process in (demo, run):
            if process is not None:
                await process.kill()
                print(process.out)  # shown when the test fails
