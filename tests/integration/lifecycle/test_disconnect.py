"""A disconnect, for whatever reason, takes back exactly the presence its sid still holds."""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.node.client import NodeClient
from tests.support import SUCCESS
from tests.support.joins import LESSON, SEATS, participant_token, request, teacher_request
from tests.support.lifecycle import SilentPollingClient, presence

SEAT_KEY = f"lesson_seat_{LESSON}"
TEACHER_KEY = f"lesson_teacher_{LESSON}"
STUDENTS_KEY = f"lesson_student_{LESSON}"
SEAT_MAP = ({str(seat): "" for seat in range(1, SEATS + 1)}, False)
#: what a participant c1 leaves behind: its key, with an empty sid and its TTL, for a comeback
C1_LEFT = ({"sid": "", "client_id": "c1", "role": "student"}, True)
T1_LEFT = ({"lesson_id": LESSON}, False)


@pytest.mark.gen_test(timeout=30)
async def test_clean_disconnects_clear_only_their_fields(
    connect, lesson, redis_db, secret, server_events, sio
):
    teacher, student = await connect(), await connect()
    assert await teacher.join(teacher_request("t1", secret)) == SUCCESS
    assert await student.join(request(access_token=participant_token("c1", secret))) == SUCCESS
    # Fields others wrote in the same hashes, and a seat assigned meanwhile, must survive.
    redis_db.hset(TEACHER_KEY, "t2", "sid-of-t2")
    redis_db.hset(STUDENTS_KEY, "c2", "sid-of-c2")
    redis_db.hset(SEAT_KEY, "3", "u9")
    teacher_sid, student_sid = teacher.sid, student.sid

    await teacher.close()
    await student.close()
    gone = [await server_events.wait_for("disconnect", sid) for sid in (teacher_sid, student_sid)]

    # python-socketio sends DISCONNECT, but may close its WebSocket before the server reads it.
    assert all(r.reason in ("client disconnect", "transport close") for r in gone)
    assert [(r.outcome, r.cleared) for r in gone] == [("SUCCESS", 1), ("SUCCESS", 2)]
    seats = dict(SEAT_MAP[0], **{"3": "u9"})
    assert presence(redis_db) == {
        SEAT_KEY: (seats, False),
        TEACHER_KEY: ({"t2": "sid-of-t2"}, True),
        STUDENTS_KEY: ({"c2": "sid-of-c2"}, False),
        "t1": T1_LEFT,
        "c1": C1_LEFT,
    }
    assert sio.rooms(teacher_sid) == sio.rooms(student_sid) == []
    assert not server_events.errors


@pytest.mark.gen_test(timeout=30)
async def test_last_field_gone_means_the_lesson_hashes_are_gone(
    connect, lesson, redis_db, secret, server_events
):
    teacher, student = await connect(), await connect()
    await teacher.join(teacher_request("t1", secret))
    await student.join(request(access_token=participant_token("c1", secret)))
    sids = teacher.sid, student.sid

    await asyncio.gather(teacher.close(), student.close())
    for sid in sids:
        await server_events.wait_for("disconnect", sid)

    assert presence(redis_db) == {SEAT_KEY: SEAT_MAP, "t1": T1_LEFT, "c1": C1_LEFT}


@pytest.mark.gen_test(timeout=30)
async def test_disconnect_without_a_join_touches_nothing(connect, lesson, redis_db, server_events):
    client = await connect()
    sid = client.sid
    # A participant without a token holds no presence: only the seat map is written.
    assert await client.join(request()) == SUCCESS

    await client.close()
    record = await server_events.wait_for("disconnect", sid)

    assert (record.outcome, record.cleared) == ("SUCCESS", 0)
    assert presence(redis_db) == {SEAT_KEY: SEAT_MAP}


@pytest.mark.gen_test(timeout=30)
async def test_node_client_clean_disconnect(url, lesson, redis_db, secret, server_events):
    client = await NodeClient.start()
    try:
        sid = (await client.connect(url, transports=["websocket"]))["id"]
        token = participant_token("c1", secret)
        assert await client.call("join_lesson", request(access_token=token)) == [SUCCESS]

        await client.send("disconnect")
        assert (await client.expect("disconnect"))["reason"] == "io client disconnect"
        record = await server_events.wait_for("disconnect", sid)
    finally:
        await client.close()

    assert (record.reason, record.cleared) == ("client disconnect", 2)
    assert presence(redis_db) == {SEAT_KEY: SEAT_MAP, "c1": C1_LEFT}


@pytest.mark.parametrize("mode", [["websocket"], ["polling"]])
@pytest.mark.gen_test(timeout=30)
async def test_node_process_killed_mid_connection(
    url, lesson, redis_db, secret, server_events, mode
):
    """The client's process dies: its TCP connections close under the server (no DISCONNECT)."""
    client = await NodeClient.start()
    try:
        sid = (await client.connect(url, transports=mode))["id"]
        token = participant_token("c1", secret)
        assert await client.call("join_lesson", request(access_token=token)) == [SUCCESS]
        assert await client.call("join_lesson", teacher_request("t1", secret)) == [SUCCESS]
    finally:
        await client.close()  # SIGKILL

    record = await server_events.wait_for("disconnect", sid)

    # WebSocket sees the TCP close at once; long-polling only misses its pings.
    assert record.reason in ("transport close", "ping timeout")
    assert record.cleared == 3
    assert presence(redis_db) == {SEAT_KEY: SEAT_MAP, "c1": C1_LEFT, "t1": T1_LEFT}


@pytest.mark.gen_test(timeout=30)
async def test_ping_timeout_clears_presence(url, lesson, redis_db, secret, server_events):
    client = SilentPollingClient(url)
    try:
        await client.connect()
        token = participant_token("c1", secret)
        assert await client.call("join_lesson", request(access_token=token)) == [SUCCESS]
        assert redis_db.hget("c1", "sid") == client.sid

        record = await server_events.wait_for("disconnect", client.sid)
    finally:
        client.close()

    assert (record.reason, record.cleared) == ("ping timeout", 2)
    assert presence(redis_db) == {SEAT_KEY: SEAT_MAP, "c1": C1_LEFT}


@pytest.mark.parametrize("first_to_leave", ["older", "newer"])
@pytest.mark.gen_test(timeout=30)
async def test_two_tabs_of_one_participant(
    connect, lesson, redis_db, secret, server_events, first_to_leave
):
    """The latest join owns the presence; whichever tab leaves first, the keys then describe the
    tab that remains, and the last one leaving clears them."""
    token = participant_token("c1", secret)
    older, newer = await connect(), await connect()
    assert await older.join(request(access_token=token)) == SUCCESS
    assert await newer.join(request(access_token=token)) == SUCCESS
    assert presence(redis_db)["c1"] == owned_by(newer.sid)
    leaving, staying = (older, newer) if first_to_leave == "older" else (newer, older)
    leaving_sid, staying_sid = leaving.sid, staying.sid

    await leaving.close()
    record = await server_events.wait_for("disconnect", leaving_sid)

    # The older tab's leave changes nothing; the owner's hands both fields to the older tab.
    assert record.cleared == (0 if first_to_leave == "older" else 2)
    assert presence(redis_db) == {
        SEAT_KEY: SEAT_MAP,
        "c1": owned_by(staying_sid),
        STUDENTS_KEY: ({"c1": staying_sid}, False),
    }

    await staying.close()
    record = await server_events.wait_for("disconnect", staying_sid)
    assert record.cleared == 2
    assert presence(redis_db) == {SEAT_KEY: SEAT_MAP, "c1": C1_LEFT}


@pytest.mark.gen_test(timeout=30)
async def test_two_apps_of_one_teacher_hand_over(
    connect, lesson, redis_db, server_events, secret
):
    first, second = await connect(), await connect()
    teacher = teacher_request("t1", secret)
    assert await first.join(teacher) == SUCCESS
    assert await second.join(teacher) == SUCCESS
    first_sid, second_sid = first.sid, second.sid

    await second.close()
    await server_events.wait_for("disconnect", second_sid)
    assert redis_db.hgetall(TEACHER_KEY) == {"t1": first_sid}

    await first.close()
    await server_events.wait_for("disconnect", first_sid)
    assert redis_db.exists(TEACHER_KEY) == 0
    assert presence(redis_db)["t1"] == T1_LEFT


def owned_by(sid: str) -> tuple[dict[str, str], bool]:
    """The {client_id} key of c1 while `sid` holds its presence (with its TTL)."""
    return ({"sid": sid, "client_id": "c1", "role": "student"}, True)


@pytest.mark.gen_test(timeout=30)
async def test_rejoin_after_a_disconnect_is_one_reconnect(
    connect, lesson, redis_db, secret, server_events, services, mixpanel_events
):
    token = participant_token("c1", secret)
    first = await connect()
    assert await first.join(request(access_token=token)) == SUCCESS
    first_sid = first.sid
    await first.close()
    await server_events.wait_for("disconnect", first_sid)

    second = await connect()
    assert await second.join(request(access_token=token)) == SUCCESS
    await services.tracker.drain()

    assert [(e["event"], e["properties"]["distinct_id"]) for e in mixpanel_events] == [
        ("reconnect", "c1")
    ]
    assert mixpanel_events[0]["properties"]["lesson_id"] == LESSON
    assert presence(redis_db) == {
        SEAT_KEY: SEAT_MAP,
        "c1": ({"sid": second.sid, "client_id": "c1", "role": "student"}, True),
        STUDENTS_KEY: ({"c1": second.sid}, False),
    }


@pytest.mark.gen_test(timeout=30)
async def test_connect_and_disconnect_are_logged_one_line_each(connect, server_events):
    client = await connect()
    sid, transport = client.sid, client.transport

    await client.close()
    await server_events.wait_for("disconnect", sid)

    connected = server_events.of("connect", sid)
    assert len(connected) == 1
    assert (connected[0].transport, connected[0].outcome) == (transport, "SUCCESS")
    assert len(server_events.of("disconnect", sid)) == 1
