"""GET /lessons/{id} and /lessons/{id}/view: the presence document, and the admin-token guard."""

from __future__ import annotations

import dataclasses
import json
import logging

import psycopg2
import pytest
import redis
from tornado.httpclient import HTTPResponse

import metrics
from config import Config
from store.lessons import MAX_SEAT_COUNT
from tests.integration.operations.conftest import (
    ADMIN_TOKEN,
    BEARER,
    SEAT_COUNT,
    Connect,
    admin_get,
    join,
    participant_token,
    teacher_token,
)
from tests.support.lessons import add_lesson
from web.auth import COOKIE_NAME

EMPTY_SEATS = {str(seat): "" for seat in range(1, SEAT_COUNT + 1)}


async def get(url: str, path: str, headers: dict[str, str] | None = None) -> HTTPResponse:
    return await admin_get(url, path, headers)


@pytest.mark.gen_test(timeout=20)
async def test_presence_after_real_joins(url: str, lesson: str, connect: Connect,
                                         redis_db: redis.Redis) -> None:
    teacher, student = await connect(), await connect("polling")
    ack = await join(teacher, user_id="t1", lesson_id=lesson, role="teacher",
                     access_token=teacher_token("t1"))
    assert ack["status"] == "SUCCESS"
    ack = await join(student, user_id="s1", lesson_id=lesson, role="student",
                     access_token=participant_token("c1", "s1"))
    assert ack["status"] == "SUCCESS"
    redis_db.hset(f"lesson_seat_{lesson}", "3", "c9")  # assigned by the platform

    response = await get(url, f"/lessons/{lesson}", BEARER)
    assert response.code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    body = json.loads(response.body)
    (row,) = body.pop("roster")  # its own tests: tests/integration/operations/test_roster.py
    assert (row["user_id"], row["status"]) == ("s1", "present")
    assert body.pop("unverified") == []
    assert body == {
        "lesson_id": lesson,
        "teachers": [{"user_id": "t1", "sid": teacher.get_sid()}],
        "participants": [{"client_id": "c1", "sid": student.get_sid(), "role": "student"}],
        "seats": {**EMPTY_SEATS, "3": "c9"},
        "seat_count": SEAT_COUNT,
        "chart_seats": SEAT_COUNT,
        "counts": {"enrolled": 1, "present": 1, "absent": 0, "left": 0},
    }


@pytest.mark.gen_test(timeout=10)
async def test_a_lesson_nobody_joined_is_empty(url: str) -> None:
    response = await get(url, "/lessons/nobody-here", BEARER)
    assert json.loads(response.body) == {
        "lesson_id": "nobody-here", "teachers": [], "participants": [], "seats": {},
        "seat_count": None, "chart_seats": None, "roster": [], "unverified": [],
        "counts": {"enrolled": 0, "present": 0, "absent": 0, "left": 0},
    }


@pytest.mark.parametrize(("seat_count", "chart_seats"), [
    (-5, 0), (0, 0), (MAX_SEAT_COUNT, MAX_SEAT_COUNT), (10**9, MAX_SEAT_COUNT),
])
@pytest.mark.gen_test(timeout=10)
async def test_the_chart_is_held_to_what_a_seat_map_holds(
    url: str, database: psycopg2.extensions.connection, seat_count: int, chart_seats: int
) -> None:
    """An absurd `lesson` row is reported as it is, but the page is told to draw no more cells
    than a seat map may hold."""
    add_lesson(database, "absurd", seat_count)
    body = json.loads((await get(url, "/lessons/absurd", BEARER)).body)
    assert (body["seat_count"], body["chart_seats"]) == (seat_count, chart_seats)


@pytest.mark.gen_test(timeout=10)
async def test_seats_in_numeric_order_and_an_expired_participant(
    url: str, redis_db: redis.Redis
) -> None:
    redis_db.hset("lesson_seat_L", mapping={"10": "", "2": "c2", "1": ""})
    redis_db.hset("lesson_student_L", mapping={"c2": "sid-2"})
    body = json.loads((await get(url, "/lessons/L", BEARER)).body)
    assert list(body["seats"]) == ["1", "2", "10"]
    assert body["participants"] == [{"client_id": "c2", "sid": "sid-2", "role": None}]


@pytest.mark.gen_test(timeout=10)
async def test_an_escaped_lesson_id_is_read_as_is(url: str, redis_db: redis.Redis) -> None:
    redis_db.hset("lesson_teacher_a b/c", mapping={"t": "sid-t"})
    body = json.loads((await get(url, "/lessons/a%20b%2Fc", BEARER)).body)
    assert body["teachers"] == [{"user_id": "t", "sid": "sid-t"}]


@pytest.mark.gen_test(timeout=10)
async def test_a_lesson_id_longer_than_the_contract_allows_is_404(url: str) -> None:
    assert (await get(url, "/lessons/" + "x" * 129, BEARER)).code == 404


class TestKeyPrefix:
    @pytest.fixture
    def config(self, config: Config) -> Config:
        return dataclasses.replace(config, key_prefix="rc:")

    @pytest.mark.gen_test(timeout=10)
    async def test_the_key_prefix_is_honoured(self, url: str, redis_db: redis.Redis) -> None:
        redis_db.hset("rc:lesson_student_L", mapping={"c1": "sid-1"})
        redis_db.hset("rc:c1", mapping={"sid": "sid-1", "client_id": "c1", "role": "student"})
        redis_db.hset("lesson_student_L", mapping={"unprefixed": "sid-x"})
        body = json.loads((await get(url, "/lessons/L", BEARER)).body)
        assert body["participants"] == [{"client_id": "c1", "sid": "sid-1", "role": "student"}]


@pytest.mark.gen_test(timeout=20)
async def test_reads_are_timed_and_an_outage_is_503_and_counted(url: str, redis_outage) -> None:
    reads = metrics.REGISTRY.get_sample_value("rollcall_store_seconds_count", {"backend": "redis"})
    errors = metrics.REGISTRY.get_sample_value("rollcall_store_errors_total", {"backend": "redis"})
    assert (await get(url, "/lessons/L", BEARER)).code == 200
    redis_outage.begin()
    response = await get(url, "/lessons/L", BEARER)
    assert response.code == 503
    assert json.loads(response.body)["status"] == "unavailable"
    assert metrics.REGISTRY.get_sample_value(
        "rollcall_store_errors_total", {"backend": "redis"}) == errors + 1
    assert metrics.REGISTRY.get_sample_value(
        "rollcall_store_seconds_count", {"backend": "redis"}) == reads + 2
    redis_outage.end()
    assert (await get(url, "/lessons/L", BEARER)).code == 200


PROTECTED = ("/lessons/L", "/lessons/L/view", "/lessons/L/attendance.csv")


@pytest.mark.parametrize("path", PROTECTED)
@pytest.mark.parametrize("headers", [
    None,
    {"Authorization": "Bearer wrong-token-of-some-length"},
    {"Authorization": f"Bearer {ADMIN_TOKEN}x"},
    {"Authorization": f"Basic {ADMIN_TOKEN}"},
    {"Cookie": f"{COOKIE_NAME}={ADMIN_TOKEN}"},
])
@pytest.mark.gen_test(timeout=10)
async def test_missing_or_wrong_token_is_401(url: str, path: str, headers) -> None:
    response = await get(url, path, headers)
    assert response.code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="rollcall"'
    assert ADMIN_TOKEN.encode() not in response.body


@pytest.mark.gen_test(timeout=10)
async def test_a_wrong_token_in_the_page_query_is_401_and_sets_no_cookie(url: str) -> None:
    response = await get(url, "/lessons/L/view?token=wrong-token-of-some-length")
    assert response.code == 401
    assert "Set-Cookie" not in response.headers


@pytest.mark.gen_test(timeout=10)
async def test_the_page_swaps_the_query_token_for_an_httponly_cookie(url: str) -> None:
    response = await get(url, f"/lessons/L/view?token={ADMIN_TOKEN}")
    assert response.code == 303
    assert response.headers["Location"] == "/lessons/L/view"
    cookie = response.headers["Set-Cookie"]
    assert ADMIN_TOKEN not in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Path=/lessons" in cookie
    session = {"Cookie": cookie.split(";", 1)[0]}
    page = await get(url, "/lessons/L/view", session)
    assert page.code == 200
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert b'data-source="/lessons/L"' in page.body
    assert (await get(url, "/lessons/L", session)).code == 200


@pytest.mark.gen_test(timeout=10)
async def test_the_page_escapes_the_lesson_id(url: str) -> None:
    page = await get(url, "/lessons/%3Cb%3Ex/view", BEARER)
    assert b"<b>x" not in page.body
    assert b"&lt;b&gt;x" in page.body


@pytest.mark.gen_test(timeout=10)
async def test_the_page_assets_are_served(url: str) -> None:
    for asset in ("lesson_view.js", "lesson_view.css"):
        assert (await get(url, f"/static/{asset}")).code == 200


@pytest.mark.gen_test(timeout=10)
async def test_the_access_log_never_shows_the_query_token(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="tornado.access"):
        await get(url, f"/lessons/L/view?token={ADMIN_TOKEN}")
        await get(url, "/lessons/L/view?token=wrong-token-of-some-length")
    lines = [r.getMessage() for r in caplog.records if r.name == "tornado.access"]
    assert len(lines) == 2
    assert not any("token" in line for line in lines)


class TestWithoutAdminToken:
    @pytest.fixture
    def config(self, config: Config) -> Config:
        return dataclasses.replace(config, admin_token=None)

    @pytest.mark.parametrize("path", [*PROTECTED, f"/lessons/L/view?token={ADMIN_TOKEN}"])
    @pytest.mark.gen_test(timeout=10)
    async def test_the_views_do_not_exist(self, url: str, path: str) -> None:
        assert (await get(url, path, BEARER)).code == 404

    @pytest.mark.gen_test(timeout=10)
    async def test_metrics_are_still_served(self, url: str) -> None:
        assert (await get(url, "/metrics")).code == 200
