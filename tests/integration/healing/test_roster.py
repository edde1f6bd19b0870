"""The roster heals like presence: the held record names each participant's roster record, so the
sweep of a killed process marks its participants `left` (a record that a newer connection holds
is untouched), and a leave kept while Redis was unreachable marks its record left when it is
retried. Real server.py processes, real python-socketio clients, the real Redis."""

from __future__ import annotations

import json
import signal
import urllib.parse

import pytest
import redis
from tornado.httpclient import AsyncHTTPClient

from config import Config
from store.keys import ROSTER_KEY
from store.roster import RosterRecord, parse_roster
from tests.integration.healing.test_crash import STUDENTS, running, swept
from tests.support.healing import RedisPartition, held, wait_for
from tests.support.joins import LESSON

ROSTER = ROSTER_KEY.format(lesson_id=LESSON)
ADMIN_TOKEN = "admin-token-for-the-healing-tests"
ADMIN = ("--admin-token", ADMIN_TOKEN)
#: the default liveness TTL: nobody is taken for dead during the partition
DEFAULT_TTL = str(Config().liveness_ttl)


def records(db: redis.Redis) -> dict[str, RosterRecord]:
    return parse_roster(db.hgetall(ROSTER))


def redis_ms(db: redis.Redis) -> int:
    seconds, micros = db.time()
    return seconds * 1000 + micros // 1000


def ms(record: RosterRecord) -> int:
    return round(record.last_seen_at.timestamp() * 1000)


async def roster_view(url: str) -> dict[str, dict]:
    """The roster rows of GET /lessons/{LESSON}, by user_id."""
    response = await AsyncHTTPClient().fetch(
        f"{url}/lessons/{urllib.parse.quote(LESSON, safe='')}",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    return {row["user_id"]: row for row in json.loads(response.body)["roster"]}


@pytest.mark.gen_test(timeout=60)
async def test_the_sweep_of_a_killed_process_marks_its_participants_left(
    lesson, redis_db, redis_url, database_url, secret
):
    async with running(redis_url, database_url, secret, 2, *ADMIN) as ((a, b), clients):
        # u1 (enrolled) and u2 on a; u3 on a, then again on b: b's connection holds its record
        for user_id in ("u1", "u2", "u3"):
            await clients.participant(a.url, user_id, secret)
        u3_on_b = await clients.participant(b.url, "u3", secret)
        u4 = await clients.participant(b.url, "u4", secret)
        assert {user_id: record.sid for user_id, record in records(redis_db).items()} == {
            "u1": redis_db.hget(STUDENTS, "u1"), "u2": redis_db.hget(STUDENTS, "u2"),
            "u3": u3_on_b.sid, "u4": u4.sid,
        }
        assert len(held(redis_db, a.process_id)) == 6  # three entries, three roster records
        before = records(redis_db)
        killed_at = redis_ms(redis_db)

        await a.stop()  # SIGKILL
        await wait_for(lambda: swept(redis_db, a.process_id), "the sweep of the killed process")

        after = records(redis_db)
        for user_id in ("u1", "u2"):
            assert after[user_id].sid == ""
            assert ms(after[user_id]) >= killed_at  # stamped by the sweep
            assert (after[user_id].joins, after[user_id].first_joined_at) == (
                before[user_id].joins, before[user_id].first_joined_at
            )
        # a newer connection's record, and a record of the live process, are untouched
        assert (after["u3"], after["u4"]) == (before["u3"], before["u4"])
        assert after["u3"].joins == 2

        rows = await roster_view(b.url)
        assert {user_id: row["status"] for user_id, row in rows.items()} == {
            "u1": "left", "u2": "left", "u3": "present", "u4": "present",
        }
        assert (rows["u1"]["enrolled"], rows["u1"]["seat"]) == (True, 7)
        assert rows["u3"]["reconnects"] == 1
        [line] = await wait_for(lambda: b.lines_with("swept dead process"), "the sweep's line")
        # u3's presence entry, like its record, belongs to its connection on b
        assert "entries=6" in line and "ghosts=2" in line and "rosters=2" in line


@pytest.mark.gen_test(timeout=60)
async def test_the_sweep_after_a_restart_alone_marks_the_roster_left(
    lesson, redis_db, redis_url, database_url, secret
):
    async with running(redis_url, database_url, secret, 1) as ((a,), clients):
        await clients.participant(a.url, "u1", secret)
        dead = a.process_id
        await a.stop()
    assert records(redis_db)["u1"].sid != ""  # nobody is alive to sweep it yet

    async with running(redis_url, database_url, secret, 1, *ADMIN) as ((restarted,), _):
        await wait_for(lambda: swept(redis_db, dead), "the restarted process's sweep")
        assert records(redis_db)["u1"].sid == ""
        assert (await roster_view(restarted.url))["u1"]["status"] == "left"


def disconnect_failed(process, sid: str) -> bool:
    return any("outcome=UNAVAILABLE" in line for line in process.lines_with(f"sid={sid}"))


@pytest.mark.gen_test(timeout=60)
async def test_a_leave_retried_after_redis_was_unreachable_marks_the_roster_left(
    lesson, redis_db, redis_url, database_url, secret
):
    flags = ("--liveness-ttl", DEFAULT_TTL, "--liveness-interval", "0.2",
             "--store-timeout", "0.5", *ADMIN)
    async with RedisPartition.open(redis_url) as partition, running(
        partition.url, database_url, secret, 1, *flags
    ) as ((a,), clients):
        old_tab = await clients.participant(a.url, "u1", secret)
        new_tab = await clients.participant(a.url, "u1", secret)  # holds u1's record now
        gone = await clients.participant(a.url, "u2", secret)
        staying = await clients.participant(a.url, "u3", secret)
        before = records(redis_db)
        assert (before["u1"].sid, before["u1"].joins) == (new_tab.sid, 2)
        sids = {"new_tab": new_tab.sid, "gone": gone.sid}

        partition.cut()
        await new_tab.close()
        await gone.close()
        for sid in sids.values():
            await wait_for(lambda sid=sid: disconnect_failed(a, sid), "a leave that failed")
        # the leaves never reached Redis: the records still name the gone sids
        assert {user_id: record.sid for user_id, record in records(redis_db).items()} == {
            "u1": sids["new_tab"], "u2": sids["gone"], "u3": staying.sid,
        }
        partition.restore()

        await wait_for(lambda: records(redis_db)["u2"].sid == "", "the retried leave of u2")
        await wait_for(lambda: len(a.lines_with("leave retried")) == 2, "both retries' lines")
        after = records(redis_db)
        # u1's record goes to the tab still open, as the disconnect would have done
        assert (after["u1"].sid, after["u1"].joins) == (old_tab.sid, 2)
        assert after["u3"] == before["u3"]
        assert redis_db.hgetall(STUDENTS) == {"u1": old_tab.sid, "u3": staying.sid}
        rows = await roster_view(a.url)
        assert {user_id: row["status"] for user_id, row in rows.items()} == {
            "u1": "present", "u2": "left", "u3": "present",
        }


@pytest.mark.gen_test(timeout=60)
async def test_a_frozen_process_swept_meanwhile_leaves_the_roster_as_swept(
    lesson, redis_db, redis_url, database_url, secret
):
    """When it wakes, its participants are dropped: their leaves change nothing the sweep did."""
    async with running(redis_url, database_url, secret, 2) as ((frozen, survivor), clients):
        u1_sid = (await clients.participant(frozen.url, "u1", secret)).sid
        pid = frozen.process_id

        frozen.server.proc.send_signal(signal.SIGSTOP)
        try:
            await wait_for(lambda: swept(redis_db, pid), "the sweep of the frozen process")
            swept_record = records(redis_db)["u1"]
            assert swept_record.sid == ""
        finally:
            frozen.server.proc.send_signal(signal.SIGCONT)
        await wait_for(lambda: frozen.lines_with("starts over as"), "its fresh start")
        await wait_for(
            lambda: frozen.lines_with(f"event=disconnect sid={u1_sid}"), "u1's disconnect"
        )
        assert records(redis_db)["u1"] == swept_record
        assert not redis_db.exists(STUDENTS)
        # back on the survivor, the same record counts one more join
        back = await clients.participant(survivor.url, "u1", secret)
        assert (records(redis_db)["u1"].sid, records(redis_db)["u1"].joins) == (back.sid, 2)
