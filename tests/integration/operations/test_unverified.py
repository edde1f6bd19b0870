"""Attendance that cannot be forged, through real clients: a join counts as the attendance of its
`user_id` only when its token vouches for that id (its user id claim, `sub` or client id); any
other join writes the design document's keys as always, and is listed apart as an unverified
claim, in the JSON, the CSV and on the page (headless Chromium)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import pathlib
import time

import pytest
import redis
import socketio

from config import Config
from store.keys import ROSTER_KEY, UNVERIFIED_KEY
from tests.integration.operations.conftest import (
    ROLL_CALL,
    Connect,
    admin_get,
    join,
    join_as,
    participant_token,
)
from tests.integration.operations.test_lesson_page import open_page, shows, summary
from tests.integration.operations.test_metrics import sample
from tests.integration.operations.test_roster import (
    csv_of,
    csv_rows,
    everyone_absent,
    leave,
    lesson_json,
    roster,
)
from tests.support import TEST_TOKEN_SECRET
from tests.support.chromium import browser
from tests.support.joins import is_process_record, token
from tests.support.lifecycle import ServerEvents

MALLORY = "mallory"
#: the key of the design document that a participant's join writes, by name (rollcall's own,
#: under `rollcall:`, are not among them)
DESIGN_KEYS = (f"lesson_seat_{ROLL_CALL}", f"lesson_student_{ROLL_CALL}", MALLORY)
UNVERIFIED = UNVERIFIED_KEY.format(lesson_id=ROLL_CALL)
ROSTER = ROSTER_KEY.format(lesson_id=ROLL_CALL)
UNVERIFIED_JOINS = "rollcall_unverified_joins_total"


def signed(**claims: object) -> str:
    """A participant's token with exactly `claims` (and an expiry)."""
    return token({**claims, "exp": int(time.time()) + 3600}, TEST_TOKEN_SECRET)


async def join_with(client: socketio.AsyncClient, user_id: str, access_token: str) -> None:
    ack = await join(client, user_id=user_id, lesson_id=ROLL_CALL, role="student",
                     access_token=access_token)
    assert ack == {"status": "SUCCESS", "data": {}}, ack


def design_keys(db: redis.Redis, sid: str) -> dict[str, tuple[dict[str, str], int]]:
    """The design document's keys as they are, the sid shown as `SID`, each with its TTL."""
    state = {}
    for key in db.keys("*"):
        if key.startswith("rollcall:") or is_process_record(key):
            continue
        value = {field: "SID" if text == sid else text for field, text in db.hgetall(key).items()}
        state[key] = (value, db.ttl(key))
    return state


@pytest.mark.gen_test(timeout=30)
async def test_the_forged_join_leaves_the_student_absent_and_writes_the_design_keys_as_ever(
    url: str, roll_call: str, connect: Connect, redis_db: redis.Redis,
    server_events: ServerEvents,
):
    """The issue's scenario: mallory's own valid token, the user_id of an enrolled student."""
    # first, for comparison, a join that the same client id makes as the user its token binds
    honest = await connect()
    await join_with(honest, "ana", signed(client_id=MALLORY, user_id="ana"))
    verified_keys = design_keys(redis_db, honest.get_sid())
    await leave(honest, server_events)
    redis_db.delete(*DESIGN_KEYS, ROSTER)

    forger = await connect()
    before = sample(UNVERIFIED_JOINS)
    await join_with(forger, "ana", participant_token(MALLORY))

    # the design document's keys, exactly as the verified join wrote them
    forged_keys = design_keys(redis_db, forger.get_sid())
    assert forged_keys == verified_keys
    assert set(forged_keys) == set(DESIGN_KEYS)
    assert forged_keys[MALLORY][0] == {"sid": "SID", "client_id": MALLORY, "role": "student"}
    assert forged_keys[f"lesson_student_{ROLL_CALL}"][0] == {MALLORY: "SID"}
    # the student stays absent, and the claim is listed apart with the client id that made it
    body = await lesson_json(url)
    assert body["roster"] == everyone_absent()
    assert body["counts"] == {"enrolled": 4, "present": 0, "absent": 4, "left": 0}
    (claim,) = body["unverified"]
    assert {k: v for k, v in claim.items() if not k.endswith("_at")} == {
        "user_id": "ana", "seat": None, "enrolled": True, "status": "unverified",
        "client_id": MALLORY, "reconnects": 0, "verified": False,
    }
    assert not redis_db.exists(ROSTER)
    # counted, and said on the join line
    assert sample(UNVERIFIED_JOINS) == before + 1
    (line,) = server_events.of("join", forger.get_sid())
    assert (line.outcome, line.verified) == ("SUCCESS", False)  # type: ignore[attr-defined]


@pytest.mark.gen_test(timeout=30)
async def test_a_forged_join_changes_nothing_of_a_students_record(
    url: str, roll_call: str, connect: Connect, server_events: ServerEvents,
):
    """Not present (ben, who left), not reconnected or left (ana, present), not its times or
    seat: whatever the forger does, joining again or leaving."""
    ana, ben = await connect(), await connect()
    await join_as(ana, "ana", ROLL_CALL)
    await join_as(ben, "ben", ROLL_CALL)
    await leave(ben, server_events)
    records = await roster(url)

    forgers = [await connect(), await connect("polling")]
    for forger in forgers:
        for user_id in ("ana", "ben"):
            await join_with(forger, user_id, participant_token(MALLORY))
    assert await roster(url) == records
    assert (records["ana"]["status"], records["ben"]["status"]) == ("present", "left")
    claims = (await lesson_json(url))["unverified"]
    assert [(c["user_id"], c["client_id"], c["reconnects"]) for c in claims] == [
        ("ana", MALLORY, 1), ("ben", MALLORY, 1),
    ]

    for forger in forgers:
        await leave(forger, server_events)
    assert await roster(url) == records


@pytest.mark.parametrize(
    "claims",
    [
        {"client_id": "tablet-3", "sub": "chen"},
        {"client_id": "tablet-3", "user_id": "chen"},
        {"client_id": "chen"},
        {"sub": "chen"},
    ],
    ids=["sub", "user_id-claim", "client_id", "sub-as-client-id"],
)
@pytest.mark.gen_test(timeout=30)
async def test_a_token_that_binds_the_user_marks_them_present(
    url: str, roll_call: str, connect: Connect, redis_db: redis.Redis,
    server_events: ServerEvents, claims: dict[str, str],
):
    client = await connect()
    before = sample(UNVERIFIED_JOINS)
    await join_with(client, "chen", signed(**claims))

    body = await lesson_json(url)
    row = next(row for row in body["roster"] if row["user_id"] == "chen")
    client_id = claims.get("client_id", claims.get("sub"))
    assert (row["status"], row["seat"], row["client_id"], row["verified"]) == (
        "present", 3, client_id, True
    )
    assert body["counts"]["present"] == 1
    assert body["unverified"] == []
    assert not redis_db.exists(UNVERIFIED)
    assert sample(UNVERIFIED_JOINS) == before
    (line,) = server_events.of("join", client.get_sid())
    assert line.verified is True  # type: ignore[attr-defined]


class TestUserIdClaim:
    """--user-id-claim names the claim that binds the user, in place of `user_id`."""

    @pytest.fixture
    def config(self, config: Config) -> Config:
        return dataclasses.replace(config, user_id_claim="student_number")

    @pytest.mark.gen_test(timeout=30)
    async def test_the_configured_claim_binds_and_the_default_one_no_longer_does(
        self, url: str, roll_call: str, connect: Connect
    ):
        await join_with(await connect(), "ana", signed(client_id="t-1", student_number="ana"))
        await join_with(await connect(), "ben", signed(client_id="t-2", user_id="ben"))

        body = await lesson_json(url)
        statuses = {row["user_id"]: row["status"] for row in body["roster"]}
        assert (statuses["ana"], statuses["ben"]) == ("present", "absent")
        assert [(c["user_id"], c["client_id"]) for c in body["unverified"]] == [("ben", "t-2")]


@pytest.mark.gen_test(timeout=30)
async def test_the_csv_says_which_rows_are_verified(
    url: str, roll_call: str, connect: Connect
):
    await join_as(await connect(), "ana", ROLL_CALL)
    await join_with(await connect(), "ben", participant_token(MALLORY))
    await join_with(await connect(), "guest", participant_token("eve"))

    body = await lesson_json(url)
    response = await admin_get(url, f"/lessons/{ROLL_CALL}/attendance.csv")
    assert response.code == 200
    rows = csv_rows(response.body)
    assert rows == [csv_of(row) for row in body["roster"] + body["unverified"]]
    assert [(r["user_id"], r["status"], r["client_id"], r["verified"]) for r in rows] == [
        ("ana", "present", "c-ana", "true"), ("ben", "absent", "", "true"),
        ("chen", "absent", "", "true"), ("dana", "absent", "", "true"),
        ("ben", "unverified", MALLORY, "false"), ("guest", "unverified", "eve", "false"),
    ]


@pytest.mark.gen_test(timeout=90)
async def test_the_page_lists_the_unverified_claims_apart(
    url: str, roll_call: str, connect: Connect, server_events: ServerEvents,
    tmp_path: pathlib.Path,
) -> None:
    loop = asyncio.get_running_loop()
    everyone_absent_shown = summary(
        "seat 1 absent ana:absent:0", "seat 2 absent ben:absent:0",
        "seat 3 absent chen:absent:0", "seat 4 empty ", "no seat dana:absent:0",
        counts=(0, 0, 4, 4, 0), teacher=False,
    )
    async with browser(tmp_path / "profile") as chromium:
        page = await open_page(chromium, url, roll_call)
        assert await page.evaluate(UNVERIFIED_SHOWN) == "none (0)"

        forger = await connect()
        since = loop.time()
        await join_with(forger, "ana", participant_token(MALLORY))
        await join_with(forger, "dana", participant_token(MALLORY))
        # the chart and the counts still say everyone is absent; the claims are listed apart
        await shows(page, everyone_absent_shown, since, tmp_path / "claimed.png")
        await page.wait_for(
            f"{UNVERIFIED_SHOWN} === {json.dumps(CLAIMS_SHOWN)}", UNVERIFIED_SHOWN, 10_000
        )
        text = await page.evaluate('document.getElementById("unverified").innerText')
        assert f"claimed by client {MALLORY}" in text
        assert "? unverified" in text  # a word and a symbol, not colour alone

        await leave(forger, server_events)
        await join_as(await connect(), "ana", roll_call)
        await shows(page, summary(
            "seat 1 present ana:present:0", "seat 2 absent ben:absent:0",
            "seat 3 absent chen:absent:0", "seat 4 empty ", "no seat dana:absent:0",
            counts=(1, 0, 3, 4, 0), teacher=False,
        ), loop.time(), tmp_path / "verified.png")
        assert await page.evaluate(UNVERIFIED_SHOWN) == CLAIMS_SHOWN


#: the page's list of unverified claims, one line per claim, and their count
UNVERIFIED_SHOWN = """(() => {
  const items = [...document.querySelectorAll("#unverified .person")].map(
    (p) => `${p.dataset.user}:${p.dataset.status}`);
  const count = document.getElementById("count-unverified").textContent;
  return `${items.join(",") || "none"} (${count})`;
})()"""
CLAIMS_SHOWN = "ana:unverified,dana:unverified (2)"
