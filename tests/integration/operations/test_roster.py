"""The roll call of a lesson through real clients: the roster records the join and leave scripts
keep, as GET /lessons/{id} and /lessons/{id}/attendance.csv show them."""

from __future__ import annotations

import csv
import dataclasses
import datetime
import io
import json
import time
import urllib.parse

import psycopg2
import pytest
import redis
import socketio

from config import Config
from store.keys import ROSTER_KEY
from tests.integration.operations.conftest import (
    ENROLLED,
    OUTSIDER,
    ROLL_CALL,
    ROLL_CALL_SEATS,
    Connect,
    admin_get,
    join,
    join_as,
    participant_token,
    teacher_token,
)
from tests.support.lessons import add_lesson
from tests.support.lifecycle import ServerEvents
from web.roll_call import RosterRow

ROSTER = ROSTER_KEY.format(lesson_id=ROLL_CALL)
SECOND_LESSON = "lesson-after"
TTL = 120  # --roster-ttl of the TTL tests: far from the default, far from running out


def absent(user_id: str, seat: int | None) -> dict[str, object]:
    return {
        "user_id": user_id, "seat": seat, "enrolled": True, "status": "absent",
        "client_id": None, "first_joined_at": None, "last_seen_at": None, "reconnects": 0,
        "verified": True,
    }


def everyone_absent() -> list[dict[str, object]]:
    """The roster of ROLL_CALL before anyone joins: seated students by seat, then the others."""
    return [absent(user_id, seat) for user_id, seat in ENROLLED.items()]


async def lesson_json(url: str, lesson_id: str = ROLL_CALL) -> dict:
    response = await admin_get(url, f"/lessons/{urllib.parse.quote(lesson_id, safe='')}")
    assert response.code == 200, response.body
    return json.loads(response.body)


async def roster(url: str, lesson_id: str = ROLL_CALL) -> dict[str, dict]:
    return {row["user_id"]: row for row in (await lesson_json(url, lesson_id))["roster"]}


async def leave(client: socketio.AsyncClient, server_events: ServerEvents) -> None:
    """Disconnect `client` and wait until the server has cleared what its sid held."""
    sid = client.get_sid()
    assert sid is not None
    await client.disconnect()
    await server_events.wait_for("disconnect", sid)


def ms_now() -> int:
    return time.time_ns() // 1_000_000


def moment(text: str) -> int:
    """An ISO 8601 time of the roster, in milliseconds since the epoch (it must be UTC)."""
    parsed = datetime.datetime.fromisoformat(text)
    assert parsed.utcoffset() == datetime.timedelta(0)
    return round(parsed.timestamp() * 1000)


@pytest.mark.gen_test(timeout=30)
async def test_before_anyone_joins_every_enrolled_student_is_absent(url: str, roll_call: str):
    body = await lesson_json(url)

    assert body["seat_count"] == ROLL_CALL_SEATS
    assert body["roster"] == everyone_absent()
    assert body["counts"] == {"enrolled": 4, "present": 0, "absent": 4, "left": 0}


@pytest.mark.gen_test(timeout=30)
async def test_a_join_records_the_client_and_the_time(url: str, roll_call: str, connect: Connect):
    before = ms_now()
    await join_as(await connect(), "ana", ROLL_CALL, client_id="tablet-7")
    after = ms_now()

    row = (await roster(url))["ana"]
    assert {k: v for k, v in row.items() if not k.endswith("_at")} == {
        "user_id": "ana", "seat": 1, "enrolled": True, "status": "present",
        "client_id": "tablet-7", "reconnects": 0, "verified": True,
    }
    assert row["first_joined_at"] == row["last_seen_at"]
    assert before <= moment(row["first_joined_at"]) <= after


@pytest.mark.gen_test(timeout=30)
async def test_the_issue_scenario_in_json_and_csv(
    url: str, roll_call: str, connect: Connect, server_events: ServerEvents
):
    """The "done when" of the roll call, without the page (test_lesson_page.py adds it)."""
    ana, dana, guest = await connect(), await connect(), await connect("polling")
    await join_as(ana, "ana", ROLL_CALL)
    await join_as(dana, "dana", ROLL_CALL)
    await join_as(guest, OUTSIDER, ROLL_CALL)

    body = await lesson_json(url)
    assert body["counts"] == {"enrolled": 4, "present": 2, "absent": 2, "left": 0}
    rows = {row["user_id"]: row for row in body["roster"]}
    assert [rows[u]["status"] for u in ENROLLED] == ["present", "absent", "absent", "present"]
    assert (rows[OUTSIDER]["enrolled"], rows[OUTSIDER]["status"]) == (False, "present")
    assert rows["dana"]["seat"] is None
    assert list(rows) == [*ENROLLED, OUTSIDER]

    await leave(ana, server_events)
    rows = await roster(url)
    assert rows["ana"]["status"] == "left"
    assert moment(rows["ana"]["last_seen_at"]) > moment(rows["ana"]["first_joined_at"])

    await join_as(await connect(), "dana", ROLL_CALL)  # a new connection; the old one stays
    rows = await roster(url)
    assert (rows["dana"]["status"], rows["dana"]["reconnects"]) == ("present", 1)

    body = await lesson_json(url)
    assert body["counts"] == {"enrolled": 4, "present": 1, "absent": 2, "left": 1}
    response = await admin_get(url, f"/lessons/{ROLL_CALL}/attendance.csv")
    assert csv_rows(response.body) == [csv_of(row) for row in body["roster"]]


def csv_rows(body: bytes) -> list[dict[str, str]]:
    """The rows of an attendance file, after checking its header."""
    reader = csv.DictReader(io.StringIO(body.decode(), newline=""))
    assert tuple(reader.fieldnames or ()) == RosterRow.FIELDS
    return list(reader)


def csv_of(row: dict[str, object]) -> dict[str, str]:
    """What the CSV says for a roster entry of the JSON."""
    def cell(value: object) -> str:
        if value is None:
            return ""
        if isinstance(value, bool):
            return str(value).lower()
        return str(value)

    return {name: cell(value) for name, value in row.items()}


@pytest.mark.gen_test(timeout=30)
async def test_a_student_who_comes_back_is_present_with_one_reconnect(
    url: str, roll_call: str, connect: Connect, server_events: ServerEvents
):
    first = await connect()
    await join_as(first, "ben", ROLL_CALL)
    joined = (await roster(url))["ben"]
    await leave(first, server_events)

    await join_as(await connect("polling"), "ben", ROLL_CALL)

    row = (await roster(url))["ben"]
    assert (row["status"], row["reconnects"]) == ("present", 1)
    assert row["first_joined_at"] == joined["first_joined_at"]
    assert moment(row["last_seen_at"]) >= moment(joined["last_seen_at"])


@pytest.mark.gen_test(timeout=30)
async def test_joining_again_on_the_same_connection_is_not_a_reconnect(
    url: str, roll_call: str, connect: Connect
):
    client = await connect()
    await join_as(client, "chen", ROLL_CALL)
    await join_as(client, "chen", ROLL_CALL)

    row = (await roster(url))["chen"]
    assert (row["status"], row["reconnects"]) == ("present", 0)


@pytest.mark.parametrize("first_to_close", ["older", "newer"])
@pytest.mark.gen_test(timeout=30)
async def test_two_tabs_keep_a_student_present_until_both_are_closed(
    url: str, roll_call: str, connect: Connect, server_events: ServerEvents, first_to_close: str
):
    older, newer = await connect(), await connect()
    await join_as(older, "ana", ROLL_CALL)
    await join_as(newer, "ana", ROLL_CALL)
    assert (await roster(url))["ana"]["reconnects"] == 1
    first, last = (older, newer) if first_to_close == "older" else (newer, older)

    # The older tab's leave must not mark the newer one's record as left, and the newer tab's
    # leave hands the record to the older tab, still open.
    await leave(first, server_events)
    assert (await roster(url))["ana"]["status"] == "present"

    await leave(last, server_events)
    row = (await roster(url))["ana"]
    assert (row["status"], row["reconnects"]) == ("left", 1)


@pytest.mark.gen_test(timeout=30)
async def test_a_teacher_and_a_participant_without_token_are_not_roster_entries(
    url: str, roll_call: str, connect: Connect, redis_db: redis.Redis
):
    teacher, tokenless = await connect(), await connect()
    ack = await join(teacher, user_id="ben", lesson_id=ROLL_CALL, role="teacher",
                     access_token=teacher_token("ben"))
    assert ack["status"] == "SUCCESS"
    # an unverified user_id could mark anyone present: without a token, nothing is recorded
    ack = await join(tokenless, user_id="chen", lesson_id=ROLL_CALL, role="student")
    assert ack["status"] == "SUCCESS"

    body = await lesson_json(url)
    assert body["roster"] == everyone_absent()
    assert body["teachers"] == [{"user_id": "ben", "sid": teacher.get_sid()}]
    assert not redis_db.exists(ROSTER)


@pytest.mark.gen_test(timeout=30)
async def test_a_lesson_switch_leaves_the_first_lesson(
    url: str, roll_call: str, connect: Connect, database: psycopg2.extensions.connection
):
    add_lesson(database, SECOND_LESSON, 2)
    client = await connect()
    await join_as(client, "ana", ROLL_CALL)

    await join_as(client, "ana", SECOND_LESSON)

    assert (await roster(url))["ana"]["status"] == "left"
    second = await lesson_json(url, SECOND_LESSON)
    assert [(r["user_id"], r["enrolled"], r["status"]) for r in second["roster"]] == [
        ("ana", False, "present")
    ]
    assert second["counts"] == {"enrolled": 0, "present": 0, "absent": 0, "left": 0}


@pytest.mark.gen_test(timeout=30)
async def test_a_lesson_without_a_row_lists_who_joined_it(url: str, redis_db: redis.Redis):
    redis_db.hset(ROSTER_KEY.format(lesson_id="gone"), "zoe", json.dumps(
        {"sid": "", "client_id": "c-z", "first": 1_700_000_000_000, "last": 1_700_000_060_000,
         "joins": 3}))

    body = await lesson_json(url, "gone")

    assert body["seat_count"] is None
    assert body["roster"] == [{
        "user_id": "zoe", "seat": None, "enrolled": False, "status": "left", "client_id": "c-z",
        "first_joined_at": "2023-11-14T22:13:20.000+00:00",
        "last_seen_at": "2023-11-14T22:14:20.000+00:00", "reconnects": 2, "verified": True,
    }]


UNREADABLE = ["not json", "[1, 2]", '{"sid": null}', '{"sid": "x", "client_id": "c", '
              '"first": 1, "last": 1, "joins": 0}', '{"sid": "x", "client_id": "c", '
              '"first": -5, "last": 1, "joins": 1}', "[" * 100_000]


@pytest.mark.parametrize("raw", UNREADABLE, ids=range(len(UNREADABLE)))
@pytest.mark.gen_test(timeout=30)
async def test_a_record_rollcall_did_not_write_reads_as_none_and_a_join_replaces_it(
    url: str, roll_call: str, connect: Connect, redis_db: redis.Redis, raw: str
):
    redis_db.hset(ROSTER, mapping={"ana": raw, "stranger": raw})

    rows = await roster(url)
    assert rows["ana"] == absent("ana", 1)
    assert "stranger" not in rows

    await join_as(await connect(), "ana", ROLL_CALL)
    row = (await roster(url))["ana"]
    assert (row["status"], row["reconnects"]) == ("present", 0)
    assert redis_db.hget(ROSTER, "stranger") == raw


@pytest.mark.gen_test(timeout=30)
async def test_a_leave_leaves_an_unreadable_record_alone(
    url: str, roll_call: str, connect: Connect, redis_db: redis.Redis,
    server_events: ServerEvents
):
    client = await connect()
    await join_as(client, "ana", ROLL_CALL)
    redis_db.hset(ROSTER, "ana", "garbage")

    await leave(client, server_events)

    assert redis_db.hget(ROSTER, "ana") == "garbage"


@pytest.mark.gen_test(timeout=30)
async def test_a_roster_key_of_another_type_refuses_the_join_and_writes_nothing(
    url: str, roll_call: str, connect: Connect, redis_db: redis.Redis
):
    redis_db.set(ROSTER, "a string")
    client = await connect()

    ack = await join(client, user_id="ana", lesson_id=ROLL_CALL, role="student",
                     access_token=participant_token("c-ana", "ana"))

    assert ack["data"]["code"] == "INTERNAL"
    assert redis_db.keys("*") == [ROSTER]


@pytest.mark.gen_test(timeout=30)
async def test_attendance_csv_names_the_lesson_and_the_day(url: str, connect: Connect,
                                                           database, redis_db: redis.Redis):
    lesson = 'Math 7/b "ü"'
    add_lesson(database, lesson, 2, {"=HYPERLINK(1)": 1})
    await join_as(await connect(), "@guest", lesson, client_id="+31 6 1234")
    before = datetime.datetime.now(datetime.UTC).date()

    response = await admin_get(url, f"/lessons/{urllib.parse.quote(lesson, safe='')}"
                                     "/attendance.csv")

    after = datetime.datetime.now(datetime.UTC).date()
    assert response.code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Content-Disposition"] in {
        f'attachment; filename="attendance_Math_7_b_____{day}.csv"; '
        f"filename*=UTF-8''{urllib.parse.quote(f'attendance_{lesson}_{day}.csv', safe='')}"
        for day in (before.isoformat(), after.isoformat())
    }
    rows = csv_rows(response.body)
    # a spreadsheet would run a cell starting with =, +, - or @ as a formula
    assert [(r["user_id"], r["client_id"], r["status"]) for r in rows] == [
        ("'=HYPERLINK(1)", "", "absent"), ("'@guest", "'+31 6 1234", "present"),
    ]
    assert response.body.endswith(b"\r\n")


@pytest.mark.parametrize("path", ["/lessons/L", "/lessons/L/attendance.csv"])
@pytest.mark.gen_test(timeout=30)
async def test_postgres_down_is_503_naming_it(url: str, postgres_outage, path: str):
    assert (await admin_get(url, path)).code == 200
    postgres_outage.begin()

    response = await admin_get(url, path)

    assert response.code == 503
    assert response.headers["Content-Type"] == "application/json"
    body = json.loads(response.body)
    assert body["status"] == "unavailable"
    assert set(body) == {"status", "postgres"}


class TestRosterTtl:
    @pytest.fixture
    def config(self, config: Config) -> Config:
        return dataclasses.replace(config, roster_ttl=TTL)

    @pytest.mark.gen_test(timeout=30)
    async def test_every_change_resets_the_ttl(
        self, url: str, roll_call: str, connect: Connect, redis_db: redis.Redis,
        server_events: ServerEvents
    ):
        client = await connect()
        await join_as(client, "ana", ROLL_CALL)
        assert TTL - 5 <= redis_db.ttl(ROSTER) <= TTL
        redis_db.expire(ROSTER, 10)

        await leave(client, server_events)

        assert TTL - 5 <= redis_db.ttl(ROSTER) <= TTL
        assert (await roster(url))["ana"]["status"] == "left"


class TestRosterOff:
    @pytest.fixture
    def config(self, config: Config) -> Config:
        return dataclasses.replace(config, roster_ttl=0)

    @pytest.mark.gen_test(timeout=30)
    async def test_nothing_is_kept_and_the_views_say_so(
        self, url: str, roll_call: str, connect: Connect, redis_db: redis.Redis,
        server_events: ServerEvents
    ):
        client = await connect()
        await join_as(client, "ana", ROLL_CALL)
        await leave(client, server_events)

        assert not redis_db.exists(ROSTER)
        body = await lesson_json(url)
        assert (body["roster"], body["counts"]) == (None, None)
        response = await admin_get(url, f"/lessons/{ROLL_CALL}/attendance.csv")
        assert response.code == 404
        assert "roster is off" in json.loads(response.body)["message"]


class TestKeyPrefix:
    @pytest.fixture
    def config(self, config: Config) -> Config:
        return dataclasses.replace(config, key_prefix="rc:")

    @pytest.mark.gen_test(timeout=30)
    async def test_the_roster_key_is_prefixed(
        self, url: str, roll_call: str, connect: Connect, redis_db: redis.Redis
    ):
        await join_as(await connect(), "ana", ROLL_CALL)

        assert redis_db.hexists("rc:" + ROSTER, "ana")
        assert not redis_db.exists(ROSTER)
        assert (await roster(url))["ana"]["status"] == "present"
