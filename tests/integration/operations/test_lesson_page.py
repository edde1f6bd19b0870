"""The lesson page, a live seating chart, in a real headless Chromium: cells change as people come
and go, without a reload, within the 2 s the roll call promises; and its screenshots."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import struct
import sys

import psycopg2
import pytest

from store.lessons import MAX_SEAT_COUNT
from tests.integration.operations.conftest import (
    ADMIN_TOKEN,
    OUTSIDER,
    ROLL_CALL,
    Connect,
    admin_get,
    join,
    join_as,
    teacher_token,
)
from tests.integration.operations.test_roster import csv_of, csv_rows, leave
from tests.support import ROOT, TEST_TOKEN_SECRET
from tests.support.chromium import BrowserError, Page, browser
from tests.support.lessons import add_lesson
from tests.support.lifecycle import ServerEvents
from tests.support.scripts import DEMO_READY, DEMO_SQL, ScriptProcess

UPDATE_TIMEOUT_MS = 10_000
#: the roll call's promise: a change shows on the page within 2 s
PAGE_DEADLINE = 2.0
LIVE = "live ·"
MARKER = "window.__sameDocument"
#: what the page shows, one line per seat cell, listed person, count and the teacher's state
SUMMARY = """(() => {
  const who = (p) => `${p.dataset.user}:${p.dataset.status}:${p.dataset.reconnects}`;
  const lines = [];
  for (const cell of document.querySelectorAll("#chart .seat")) {
    const people = [...cell.querySelectorAll(".person")].map(who).join(",");
    lines.push(`seat ${cell.dataset.seat} ${cell.dataset.status} ${people}`);
  }
  for (const p of document.querySelectorAll("#unseated .person")) lines.push(`no seat ${who(p)}`);
  for (const p of document.querySelectorAll("#outsiders .person")) lines.push(`outsider ${who(p)}`);
  for (const name of ["present", "left", "absent", "enrolled", "outsiders"]) {
    lines.push(`${name} ${document.getElementById("count-" + name).textContent}`);
  }
  lines.push(`teacher ${document.getElementById("teacher").dataset.connected}`);
  return lines.join("\\n");
})()"""
#: Chromium's widths for the screenshots: a phone and a desktop, in CSS pixels
PHONE = (390, 844, 2)
DESKTOP = (1280, 800, 1)
SCREENSHOT_DIR = "ROLLCALL_SCREENSHOT_DIR"  # where `make screenshots` wants them (docs/images)
#: the demo class once `make demo` filled it: 19 present, 2 left, 5 absent of 26, 1 not enrolled
DEMO_LESSON = "demo-lesson"
DEMO_SHOWN = (
    '["present", "left", "absent", "enrolled", "outsiders"].map((name) =>'
    ' document.getElementById("count-" + name).textContent).join(" ") === "19 2 5 26 1"'
    ' && document.getElementById("teacher").dataset.connected === "true"'
)
PRESENT_COLOUR = "rgb(26, 127, 55)"  # --present in lesson_view.css
LEFT_COLOUR = "rgb(154, 77, 0)"  # --left


def summary(*lines: str, counts: tuple[int, int, int, int, int], teacher: bool) -> str:
    present, left, absent, enrolled, outsiders = counts
    return "\n".join([
        *lines, f"present {present}", f"left {left}", f"absent {absent}",
        f"enrolled {enrolled}", f"outsiders {outsiders}", f"teacher {str(teacher).lower()}",
    ])


async def shown(page: Page, text: str, screenshot: pathlib.Path) -> str:
    """The page's text once it shows `text`; a screenshot of it is kept if it never does."""
    try:
        return await page.wait_for_text(text, UPDATE_TIMEOUT_MS)
    except BrowserError:
        await page.screenshot(screenshot)
        raise


async def shows(page: Page, expected: str, since: float, screenshot: pathlib.Path) -> float:
    """Seconds from `since` (the loop's clock) until the page's SUMMARY is `expected`; fails if
    that takes more than PAGE_DEADLINE, keeping a screenshot."""
    loop = asyncio.get_running_loop()
    remaining_ms = max(0, round((PAGE_DEADLINE - (loop.time() - since)) * 1000))
    try:
        await page.wait_for(f"{SUMMARY} === {json.dumps(expected)}", SUMMARY, remaining_ms)
    except BrowserError:
        await page.screenshot(screenshot)
        raise
    return loop.time() - since


async def open_page(chromium, url: str, lesson: str) -> Page:
    page = await chromium.new_page()
    await page.navigate(f"{url}/lessons/{lesson}/view?token={ADMIN_TOKEN}")
    await page.wait_for_text(LIVE, UPDATE_TIMEOUT_MS)
    await page.evaluate(f"{MARKER} = true")
    return page


@pytest.mark.gen_test(timeout=90)
async def test_a_participant_who_joins_appears_without_a_reload(
    url: str, lesson: str, connect: Connect, tmp_path: pathlib.Path
) -> None:
    async with browser(tmp_path / "profile") as chromium:
        page = await chromium.new_page()
        await page.navigate(f"{url}/lessons/{lesson}/view?token={ADMIN_TOKEN}")
        before = await shown(page, LIVE, tmp_path / "before.png")
        assert "not connected" in before
        assert "Seat 2\ns1\n○ absent" in before
        # the token left the address bar and is kept where scripts cannot read it
        assert await page.evaluate("location.pathname + location.search") == (
            f"/lessons/{lesson}/view"
        )
        assert await page.evaluate("document.cookie") == ""
        await page.evaluate(f"{MARKER} = true")

        teacher = await connect()
        ack = await join(teacher, user_id="t1", lesson_id=lesson, role="teacher",
                         access_token=teacher_token("t1"))
        assert ack["status"] == "SUCCESS"
        await join_as(await connect(), "s1", lesson)

        after = await shown(page, "Seat 2\ns1\n● present", tmp_path / "after.png")
        assert "Teacher: ● connected t1" in after
        assert await page.evaluate(MARKER) is True, "the page was reloaded"


@pytest.mark.gen_test(timeout=60)
async def test_an_absurd_seat_count_draws_a_bounded_chart_and_says_so(
    url: str, database: psycopg2.extensions.connection, tmp_path: pathlib.Path
) -> None:
    add_lesson(database, "absurd", 10**9, {"s1": 2})
    async with browser(tmp_path / "profile") as chromium:
        page = await open_page(chromium, url, "absurd")
        text = await shown(page, "as many as a seat map holds", tmp_path / "absurd.png")
        assert f"says {10**9} seats; the chart draws {MAX_SEAT_COUNT}" in text
        cells = await page.evaluate('document.querySelectorAll("#chart .seat").length')
        assert cells == MAX_SEAT_COUNT
        assert "Seat 2\ns1\n○ absent" in text


@pytest.mark.gen_test(timeout=120)
async def test_the_roll_call_of_four_enrolled_and_an_outsider(
    url: str, roll_call: str, connect: Connect, server_events: ServerEvents,
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """The issue's "done when": 4 enrolled (seats 1, 2, 3 and one without), one outsider; the
    JSON, the CSV and the page (within 2 s) after joins, a disconnect and a rejoin."""
    loop = asyncio.get_running_loop()
    latencies = []
    async with browser(tmp_path / "profile") as chromium:
        page = await open_page(chromium, url, roll_call)
        assert await page.evaluate(SUMMARY) == summary(
            "seat 1 absent ana:absent:0", "seat 2 absent ben:absent:0",
            "seat 3 absent chen:absent:0", "seat 4 empty ", "no seat dana:absent:0",
            counts=(0, 0, 4, 4, 0), teacher=False,
        )

        # two enrolled students (one of them without a seat) and the outsider join
        ana, dana = await connect(), await connect("polling")
        await join_as(ana, "ana", roll_call)
        await join_as(dana, "dana", roll_call)
        await join_as(await connect(), OUTSIDER, roll_call)
        latencies.append(await shows(page, summary(
            "seat 1 present ana:present:0", "seat 2 absent ben:absent:0",
            "seat 3 absent chen:absent:0", "seat 4 empty ", "no seat dana:present:0",
            f"outsider {OUTSIDER}:present:0",
            counts=(2, 0, 2, 4, 1), teacher=False,
        ), loop.time(), tmp_path / "joined.png"))
        body = await roster_json(url)
        assert body["counts"] == {"enrolled": 4, "present": 2, "absent": 2, "left": 0}
        statuses = {row["user_id"]: (row["enrolled"], row["status"]) for row in body["roster"]}
        assert statuses == {
            "ana": (True, "present"), "ben": (True, "absent"), "chen": (True, "absent"),
            "dana": (True, "present"), OUTSIDER: (False, "present"),
        }
        await same_csv(url, body)
        cell = 'document.querySelector("#chart [data-seat=\\"1\\"]")'
        assert await page.evaluate(f"getComputedStyle({cell}).borderTopColor") == PRESENT_COLOUR

        # one disconnects: left
        since = loop.time()
        await leave(ana, server_events)
        latencies.append(await shows(page, summary(
            "seat 1 left ana:left:0", "seat 2 absent ben:absent:0",
            "seat 3 absent chen:absent:0", "seat 4 empty ", "no seat dana:present:0",
            f"outsider {OUTSIDER}:present:0",
            counts=(1, 1, 2, 4, 1), teacher=False,
        ), since, tmp_path / "left.png"))
        body = await roster_json(url)
        assert [row["status"] for row in body["roster"] if row["user_id"] == "ana"] == ["left"]
        await same_csv(url, body)
        assert "◐ left" in await page.evaluate(f"{cell}.innerText")  # a word, not colour alone
        assert await page.evaluate(f"getComputedStyle({cell}).borderTopColor") == LEFT_COLOUR

        # another rejoins on a new connection: one reconnect, still present after the old
        # connection goes
        await join_as(await connect(), "dana", roll_call)
        since = loop.time()
        await leave(dana, server_events)
        latencies.append(await shows(page, summary(
            "seat 1 left ana:left:0", "seat 2 absent ben:absent:0",
            "seat 3 absent chen:absent:0", "seat 4 empty ", "no seat dana:present:1",
            f"outsider {OUTSIDER}:present:0",
            counts=(1, 1, 2, 4, 1), teacher=False,
        ), since, tmp_path / "rejoined.png"))
        body = await roster_json(url)
        dana_row = next(row for row in body["roster"] if row["user_id"] == "dana")
        assert (dana_row["seat"], dana_row["status"], dana_row["reconnects"]) == (
            None, "present", 1
        )
        await same_csv(url, body)
        assert await page.evaluate(MARKER) is True, "the page was reloaded"
    with capsys.disabled():
        print("\nlesson page caught up in", ", ".join(f"{s * 1000:.0f} ms" for s in latencies))


async def roster_json(url: str) -> dict:
    response = await admin_get(url, f"/lessons/{ROLL_CALL}")
    assert response.code == 200
    return json.loads(response.body)


async def same_csv(url: str, body: dict) -> None:
    """The attendance file says what the JSON says."""
    response = await admin_get(url, f"/lessons/{ROLL_CALL}/attendance.csv")
    assert response.code == 200
    assert csv_rows(response.body) == [csv_of(row) for row in body["roster"]]


def png_size(path: pathlib.Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk, after checking the signature."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


@pytest.mark.gen_test(timeout=120)
async def test_screenshots_at_a_phone_and_a_desktop_width(
    url: str, redis_url: str, database: psycopg2.extensions.connection, tmp_path: pathlib.Path,
) -> None:
    """The demo class of `make run` once `make demo` (scripts/demo.py, run as it is) filled it,
    for the README and docs/operations.md (`make screenshots` writes them to docs/images); the
    phone's page must fit its width."""
    target = pathlib.Path(os.environ.get(SCREENSHOT_DIR) or tmp_path)
    with database.cursor() as cur:
        cur.execute(DEMO_SQL.read_text())
    demo = await ScriptProcess.start(
        ROOT, sys.executable, "scripts/demo.py", "--url", url, "--redis-url", redis_url,
        "--admin-token", ADMIN_TOKEN, env={**os.environ, "ACCESS_TOKEN_SECRET": TEST_TOKEN_SECRET},
    )
    try:
        async with asyncio.timeout(UPDATE_TIMEOUT_MS / 1000):
            await demo.wait_for(DEMO_READY)
        async with browser(tmp_path / "profile") as chromium:
            for name, (width, height, scale) in (("phone", PHONE), ("desktop", DESKTOP)):
                page = await chromium.new_page()
                await page.set_viewport(width, height, scale)
                await page.navigate(f"{url}/lessons/{DEMO_LESSON}/view?token={ADMIN_TOKEN}")
                await page.wait_for(DEMO_SHOWN, SUMMARY, UPDATE_TIMEOUT_MS)
                assert await page.evaluate("document.documentElement.scrollWidth") <= width
                path = target / f"lesson-view-{name}.png"
                await page.screenshot(path, full_page=True)
                assert png_size(path)[0] == width * scale
    finally:
        demo.interrupt()
        assert await demo.ended() == 0, demo.out
