"""A stop hands presence over (--handover-grace): real server.py processes, real signals, a whole
class on Node's socket.io-client joining again on every reconnect, and the presence keys sampled
every 50 ms throughout, as another service reading them would see them."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass

import psycopg2.extensions
import pytest
import redis
import redis.asyncio as aioredis
from tornado.httpclient import AsyncHTTPClient

from config import Config
from server import SHUTDOWN_TIMEOUT
from store.keys import ROSTER_KEY
from store.roster import parse_roster
from tests.integration.healing.test_crash import STUDENTS, TEACHERS, swept
from tests.integration.healing.test_roster import ADMIN, ms, records, redis_ms, roster_view
from tests.integration.join_lesson.conftest import MIXPANEL_TOKEN
from tests.integration.node.classroom import Classroom
from tests.support import ROOT, SERVER_START_TIMEOUT, free_port
from tests.support.healing import (
    INTERVAL,
    RedisPartition,
    Rollcall,
    held,
    registered,
    wait_for,
)
from tests.support.joins import LESSON, SEATS, participant_token, request, teacher_request
from tests.support.lessons import add_lesson

ROSTER = ROSTER_KEY.format(lesson_id=LESSON)
SAMPLE_EVERY = 0.05
#: the issue's bound: every client holds a new connection's sid within this of the SIGTERM
REJOINED_WITHIN = 10.0
#: a drain short enough for the tests, long enough to be spread over several batches
DRAIN = ("--shutdown-drain", "0.5")
#: what a loaded test machine may add to a heartbeat's period
HEARTBEAT_SLACK = 1.0
PARTICIPANTS = [f"u{n}" for n in range(1, SEATS + 1)]
#: heartbeats no loaded machine misses (the tests' usual 0.3 s / 0.5 s would make clients
#: reconnect now and then by themselves); a stop closes the sessions anyway
STEADY_PINGS = ("--ping-interval", "5", "--ping-timeout", "10")


@pytest.fixture
def enrolled(database: psycopg2.extensions.connection) -> str:
    """The lesson of SEATS seats, every participant u1 … u30 enrolled in seat n."""
    return add_lesson(database, LESSON, SEATS, {user: n for n, user in enumerate(PARTICIPANTS, 1)})


def lesson_members(secret: str, users: list[str], teacher: str | None = "t1") -> dict[str, dict]:
    """The join request of each member: participants (client id = user id) and a teacher."""
    members = {
        user: request(user_id=user, access_token=participant_token(user, secret)) for user in users
    }
    if teacher is not None:
        members[teacher] = teacher_request(teacher, secret)
    return members


@dataclass(frozen=True)
class Sample:
    at: float
    students: frozenset[str]
    teachers: frozenset[str]
    #: participants whose roster record says left (what the lesson view shows as "left")
    left: frozenset[str]


class PresenceSampler:
    """Reads the lesson's presence keys and roster every SAMPLE_EVERY seconds, as a service
    reading them would, for as long as it runs."""

    def __init__(self, redis_url: str) -> None:
        self._redis = aioredis.from_url(redis_url, decode_responses=True)
        self.samples: list[Sample] = []
        self._task: asyncio.Task[None] | None = None

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, redis_url: str) -> AsyncIterator[PresenceSampler]:
        sampler = cls(redis_url)
        sampler._task = asyncio.ensure_future(sampler._run())
        try:
            yield sampler
        finally:
            sampler._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler._task
            await sampler._redis.aclose()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hkeys(STUDENTS)
                pipe.hkeys(TEACHERS)
                pipe.hgetall(ROSTER)
                students, teachers, roster = await pipe.execute()
            left = {user for user, record in parse_roster(roster).items() if not record.live}
            self.samples.append(
                Sample(loop.time(), frozenset(students), frozenset(teachers), frozenset(left))
            )
            await asyncio.sleep(SAMPLE_EVERY)

    def gaps(self, students: set[str], teachers: set[str]) -> list[tuple[float, list[str]]]:
        """The samples in which any of `students` / `teachers` was missing or shown as left:
        (when, who)."""
        return [
            (sample.at, sorted((students - sample.students) | (teachers - sample.teachers)
                               | (students & sample.left)))
            for sample in self.samples
            if students - sample.students or teachers - sample.teachers
            or students & sample.left
        ]  # fmt: skip

    def first_without(self, names: set[str], since: float) -> float | None:
        """When a sample taken after `since` first had none of `names` present."""
        for sample in self.samples:
            if sample.at >= since and not names & (sample.students | sample.teachers):
                return sample.at
        return None


class FailoverRelay:
    """A TCP load balancer in front of several rollcall processes, as nginx with
    `proxy_next_upstream error`: each connection goes to the first upstream that accepts it."""

    def __init__(self, *upstreams: str) -> None:
        self._ports = [int(url.rsplit(":", 1)[1]) for url in upstreams]
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, *upstreams: str) -> AsyncIterator[FailoverRelay]:
        relay = cls(*upstreams)
        relay._server = await asyncio.start_server(relay._relay, "127.0.0.1", 0)
        try:
            yield relay
        finally:
            relay._server.close()
            for writer in list(relay._links):
                writer.close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for port in self._ports:
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", port)
                break
            except OSError:
                continue
        else:
            writer.close()
            return
        self._links.update((writer, upstream_writer))
        try:
            await asyncio.gather(
                self._pump(reader, upstream_writer), self._pump(upstream_reader, writer)
            )
        finally:
            for side in (writer, upstream_writer):
                self._links.discard(side)
                side.close()

    @staticmethod
    async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        sink.close()


def now() -> float:
    return asyncio.get_running_loop().time()


async def terminate(process: Rollcall, drain: float = 0.5) -> None:
    """SIGTERM, and the exit 0 within the shutdown's bound (`drain`: its --shutdown-drain)."""
    process.server.proc.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(drain + SHUTDOWN_TIMEOUT + HEARTBEAT_SLACK):
            returncode = await process.server.proc.wait()
    except TimeoutError:
        raise AssertionError(f"no exit in time:\n{process.output.decode()}") from None
    assert returncode == 0, process.output.decode()


def keys(db: redis.Redis) -> tuple[dict[str, str], dict[str, str]]:
    """The lesson's participants and teachers now (before the clients are closed)."""
    return db.hgetall(STUDENTS), db.hgetall(TEACHERS)


def on(db: redis.Redis, process: Rollcall, sids: dict[str, str]) -> bool:
    """Whether every one of `sids` is held by `process` (its held record names them)."""
    return set(sids.values()) <= set(held(db, process.process_id).values())


class Deployment:
    """The server.py processes of a test, with the same flags and, unless told otherwise, on
    the same port (as a restart runs them), and the classes connected to them."""

    def __init__(self, redis_url: str, database_url: str, secret: str, flags: tuple[str, ...]):
        self._args = (redis_url, database_url, secret, *STEADY_PINGS, *flags)
        self.port = free_port()
        self.processes: list[Rollcall] = []
        self.classrooms: list[Classroom] = []

    @classmethod
    @contextlib.asynccontextmanager
    async def running(
        cls, redis_url: str, database_url: str, secret: str, *flags: str
    ) -> AsyncIterator[Deployment]:
        """Everything started is closed (classes) and killed (processes) at the end."""
        deployment = cls(redis_url, database_url, secret, flags)
        try:
            yield deployment
        finally:
            for classroom in deployment.classrooms:
                await classroom.close()
            for process in deployment.processes:
                await process.stop()

    async def start(self, own_port: bool = False) -> Rollcall:
        """A process on the deployment's port, or on a port of its own."""
        process = await Rollcall.start(*self._args, port=0 if own_port else self.port)
        self.processes.append(process)
        return process

    async def classroom(self, url: str, members: dict[str, dict], **opts: object) -> Classroom:
        classroom = await Classroom.start(url, members, **opts)
        self.classrooms.append(classroom)
        return classroom


@pytest.mark.gen_test(timeout=90)
async def test_a_plain_restart_under_a_live_lesson_loses_nobody(
    enrolled, redis_db, redis_url, database_url, secret, mixpanel_url, mixpanel_events
):
    """SIGTERM, then the same command again, as `systemctl restart` does, with the default
    --handover-grace and --shutdown-drain."""
    flags = (*ADMIN, "--mixpanel-token", MIXPANEL_TOKEN, "--mixpanel-events-url", mixpanel_url)
    async with Deployment.running(redis_url, database_url, secret, *flags) as deployment:
        a = await deployment.start()
        classroom = await deployment.classroom(a.url, lesson_members(secret, PARTICIPANTS))
        before = await classroom.all_joined(within=20)
        assert redis_db.hgetall(STUDENTS) == {user: before[user] for user in PARTICIPANTS}
        async with PresenceSampler.running(redis_url) as sampler:
            loop = asyncio.get_running_loop()
            sigterm_at = loop.time()
            await terminate(a, drain=Config().shutdown_drain)
            b = await deployment.start()
            after = await classroom.all_joined(
                within=REJOINED_WITHIN - (loop.time() - sigterm_at), since=sigterm_at
            )
            rejoined_in = loop.time() - sigterm_at
        view = await roster_view(b.url)
        students, teachers = keys(redis_db)
        ends = [event["at"] for event in classroom.of("disconnect") if event["at"] >= sigterm_at]

    assert rejoined_in < REJOINED_WITHIN
    # closed in batches over the drain (31 sessions: 16 batches 0.1 s apart), not all at once
    assert len(ends) == len(PARTICIPANTS) + 1
    assert 1.0 <= max(ends) - min(ends) <= Config().shutdown_drain + HEARTBEAT_SLACK
    # nobody vanished from the keys, or was shown as left, in any sample
    assert len(sampler.samples) >= rejoined_in / SAMPLE_EVERY / 2
    assert sampler.gaps(set(PARTICIPANTS), {"t1"}) == []
    assert students == {user: after[user] for user in PARTICIPANTS}
    assert teachers == {"t1": after["t1"]}
    assert all(after[name] != before[name] for name in after)
    assert {user: (row["status"], row["reconnects"]) for user, row in view.items()} == {
        user: ("present", 1) for user in PARTICIPANTS
    }
    # the stopping process said what it did, and left its records for the grace
    [retiring] = a.lines_with("retiring")
    assert f"process_id={a.process_id}" in retiring
    [handed] = a.lines_with("handed over")
    assert "connections=31" in handed
    assert a.lines_with("retired") == []
    # each participant's comeback is a Mixpanel reconnect (its {client_id} key still existed)
    await wait_for(lambda: len(mixpanel_events) >= len(PARTICIPANTS), "the reconnect events")
    assert sorted(
        (event["event"], event["properties"]["distinct_id"]) for event in mixpanel_events
    ) == sorted(("reconnect", user) for user in PARTICIPANTS)


@pytest.mark.gen_test(timeout=90)
async def test_a_peer_takes_the_clients_over_and_the_sweep_after_the_grace_clears_nothing(
    enrolled, redis_db, redis_url, database_url, secret
):
    flags = (*ADMIN, *DRAIN, "--handover-grace", "3")
    movers, stayers = PARTICIPANTS[:20], PARTICIPANTS[20:]
    async with Deployment.running(redis_url, database_url, secret, *flags) as deployment:
        a = await deployment.start(own_port=True)
        b = await deployment.start(own_port=True)
        async with FailoverRelay.open(a.url, b.url) as relay:
            moving = await deployment.classroom(relay.url, lesson_members(secret, movers))
            staying = await deployment.classroom(
                b.url, lesson_members(secret, stayers, teacher="t2")
            )
            before = await moving.all_joined(within=20)
            own = await staying.all_joined(within=20)
            assert on(redis_db, a, before) and on(redis_db, b, own)

            async with PresenceSampler.running(redis_url) as sampler:
                sigterm_at = now()
                await terminate(a)
                after = await moving.all_joined(within=REJOINED_WITHIN, since=sigterm_at)
                assert on(redis_db, b, after)
                # the grace ends: b sweeps a, and finds nothing left to clear
                await wait_for(lambda: swept(redis_db, a.process_id), "the sweep of a")
            [line] = b.lines_with("swept dead process")
            view = await roster_view(b.url)
            students, teachers = keys(redis_db)

    assert f"process_id={a.process_id}" in line and "ghosts=0" in line and "rosters=0" in line
    assert sampler.gaps(set(PARTICIPANTS), {"t1", "t2"}) == []
    assert students == {
        **{user: after[user] for user in movers}, **{user: own[user] for user in stayers}
    }
    assert teachers == {"t1": after["t1"], "t2": own["t2"]}
    assert {user: (row["status"], row["reconnects"]) for user, row in view.items()} == {
        **{user: ("present", 1) for user in movers}, **{user: ("present", 0) for user in stayers}
    }


@pytest.mark.gen_test(timeout=90)
async def test_clients_that_never_come_back_are_swept_after_the_grace_and_shown_left(
    enrolled, redis_db, redis_url, database_url, secret
):
    grace = 2.0
    flags = (*ADMIN, *DRAIN, "--handover-grace", str(grace))
    back, gone = PARTICIPANTS[:5], PARTICIPANTS[5:10]
    async with Deployment.running(redis_url, database_url, secret, *flags) as deployment:
        a = await deployment.start(own_port=True)
        b = await deployment.start(own_port=True)
        async with FailoverRelay.open(a.url, b.url) as relay:
            returning = await deployment.classroom(relay.url, lesson_members(secret, back))
            leaving = await deployment.classroom(
                relay.url, lesson_members(secret, gone, teacher="t2"), reconnection=False
            )
            await returning.all_joined(within=20)
            await leaving.all_joined(within=20)
            before = records(redis_db)

            async with PresenceSampler.running(redis_url) as sampler:
                loop = asyncio.get_running_loop()
                sigterm_at, sigterm_ms = loop.time(), redis_ms(redis_db)
                await terminate(a)
                after = await returning.all_joined(within=REJOINED_WITHIN, since=sigterm_at)
                await wait_for(lambda: swept(redis_db, a.process_id), "the sweep of a")
                cleared_at = await wait_for(
                    lambda: sampler.first_without({*gone, "t2"}, since=sigterm_at),
                    "a sample without those who never came back",
                )
            view = await roster_view(b.url)
            students, teachers = keys(redis_db)
            left = records(redis_db)
            [line] = b.lines_with("swept dead process")
            client_keys = [redis_db.hget(user, "sid") for user in gone]

    # kept for the grace, then cleared within the grace and one heartbeat
    assert grace <= cleared_at - sigterm_at <= grace + INTERVAL + HEARTBEAT_SLACK
    assert students == {user: after[user] for user in back}
    assert teachers == {"t1": after["t1"]}
    assert client_keys == [""] * len(gone)
    assert "ghosts=6" in line and "rosters=5" in line
    # shown as left from when their connections ended (the drain), not from the sweep
    for user in gone:
        assert view[user]["status"] == "left"
        assert left[user].joins == before[user].joins
        assert sigterm_ms <= ms(left[user]) <= sigterm_ms + 1000 * (0.5 + HEARTBEAT_SLACK)
    assert {user: (view[user]["status"], view[user]["reconnects"]) for user in back} == {
        user: ("present", 1) for user in back
    }


@pytest.mark.gen_test(timeout=120)
async def test_a_sigkill_of_the_new_process_during_the_grace_heals_as_a_crash(
    enrolled, redis_db, redis_url, database_url, secret
):
    flags = (*ADMIN, *DRAIN, "--handover-grace", "4")
    users = PARTICIPANTS[:10]
    async with Deployment.running(redis_url, database_url, secret, *flags) as deployment:
        a = await deployment.start()
        classroom = await deployment.classroom(a.url, lesson_members(secret, users))
        await classroom.all_joined(within=20)
        sigterm_at = now()
        await terminate(a)
        b = await deployment.start()
        on_b = await classroom.all_joined(within=REJOINED_WITHIN, since=sigterm_at)
        assert on(redis_db, b, on_b)

        killed_at = now()
        await b.stop()  # SIGKILL, within a's grace
        c = await deployment.start()
        on_c = await classroom.all_joined(within=REJOINED_WITHIN + 5, since=killed_at)
        await wait_for(
            lambda: swept(redis_db, a.process_id) and swept(redis_db, b.process_id),
            "the sweeps of a and b",
        )
        view = await roster_view(c.url)
        students, teachers = keys(redis_db)
        assert on(redis_db, c, on_c)

    assert students == {user: on_c[user] for user in users}
    assert teachers == {"t1": on_c["t1"]}
    assert {user: (view[user]["status"], view[user]["reconnects"]) for user in users} == {
        user: ("present", 2) for user in users
    }


@pytest.mark.gen_test(timeout=90)
async def test_a_sigkill_of_the_stopping_process_during_its_drain_heals_too(
    enrolled, redis_db, redis_url, database_url, secret
):
    # a grace longer than the restart takes on a loaded machine, as in production (30 s)
    flags = (*ADMIN, "--shutdown-drain", "3", "--handover-grace", "10")
    async with Deployment.running(redis_url, database_url, secret, *flags) as deployment:
        a = await deployment.start()
        classroom = await deployment.classroom(a.url, lesson_members(secret, PARTICIPANTS))
        await classroom.all_joined(within=20)
        async with PresenceSampler.running(redis_url) as sampler:
            sigterm_at = now()
            a.server.proc.send_signal(signal.SIGTERM)
            await wait_for(lambda: a.lines_with("HANDED_OVER"), "the drain's first batch")
            await a.stop()  # SIGKILL, the drain half done
            b = await deployment.start()
            after = await classroom.all_joined(within=REJOINED_WITHIN, since=sigterm_at)
            await wait_for(lambda: swept(redis_db, a.process_id), "the sweep of a")
        view = await roster_view(b.url)
        students, _ = keys(redis_db)

    assert a.lines_with("handed over") == []  # it never got that far
    assert sampler.gaps(set(PARTICIPANTS), {"t1"}) == []
    assert students == {user: after[user] for user in PARTICIPANTS}
    assert {row["status"] for row in view.values()} == {"present"}


@pytest.mark.gen_test(timeout=90)
async def test_a_stop_that_cannot_reach_redis_falls_back_and_heals_as_a_crash(
    enrolled, redis_db, redis_url, database_url, secret
):
    """Redis unreachable at the SIGTERM: the retiring mark cannot be written, so the stop clears
    as with --handover-grace 0 (which cannot reach Redis either), exits 0 in time, and what it
    held is swept once its liveness lapses, by the process that follows."""
    users = PARTICIPANTS[:5]
    async with RedisPartition.open(redis_url) as partition:
        flags = (*ADMIN, *DRAIN, "--store-timeout", "0.5")
        async with Deployment.running(partition.url, database_url, secret, *flags) as deployment:
            a = await deployment.start()
            classroom = await deployment.classroom(a.url, lesson_members(secret, users))
            await classroom.all_joined(within=20)
            partition.cut()
            started = now()
            await terminate(a)
            stopped_in = now() - started
            partition.restore()
            b = await deployment.start()
            after = await classroom.all_joined(within=REJOINED_WITHIN, since=started)
            await wait_for(lambda: swept(redis_db, a.process_id), "the sweep of a")
            students, teachers = keys(redis_db)
            assert on(redis_db, b, after)

    assert stopped_in < SHUTDOWN_TIMEOUT + 0.5
    [warning] = a.lines_with("not marked retiring")
    assert "clearing presence at the stop instead" in warning
    assert a.lines_with("handed over") == [] and a.lines_with("HANDED_OVER") == []
    assert students == {user: after[user] for user in users}
    assert teachers == {"t1": after["t1"]}


@pytest.mark.gen_test(timeout=90)
async def test_handover_grace_0_clears_at_the_stop_as_before(
    enrolled, redis_db, redis_url, database_url, secret
):
    """The same restart as the first test with --handover-grace 0: everyone vanishes from the
    keys and is shown left until they are back (what the handover is for)."""
    flags = (*ADMIN, *DRAIN, "--handover-grace", "0")
    users = PARTICIPANTS[:10]
    async with Deployment.running(redis_url, database_url, secret, *flags) as deployment:
        a = await deployment.start()
        classroom = await deployment.classroom(a.url, lesson_members(secret, users))
        await classroom.all_joined(within=20)
        async with PresenceSampler.running(redis_url) as sampler:
            sigterm_at = now()
            await terminate(a)
            stopped_at = now()
            await deployment.start()
            after = await classroom.all_joined(within=REJOINED_WITHIN, since=sigterm_at)
        students, _ = keys(redis_db)

    gaps = dict(sampler.gaps(set(users), {"t1"}))
    everyone = sorted({*users, "t1"})
    assert any(who == everyone for at, who in gaps.items() if at >= stopped_at)
    assert len(a.lines_with("retired")) == 1 and a.lines_with("retiring") == []
    assert not held(redis_db, a.process_id)
    assert students == {user: after[user] for user in users}


@pytest.mark.gen_test(timeout=90)
async def test_an_overlapping_start_with_reuse_port_refuses_no_connection(
    enrolled, redis_db, redis_url, database_url, secret
):
    """The new process binds the same port while the old one still serves, then the old one
    stops: a prober opening a new HTTP connection every 20 ms is never refused, and the class
    (WebSocket only: the two processes share no sessions) moves over."""
    probes: list[int | str] = []

    async def probe(url: str) -> None:
        http = AsyncHTTPClient(force_instance=True)
        try:
            while True:
                try:
                    response = await http.fetch(f"{url}/healthz", raise_error=False)
                    probes.append(response.code)
                except OSError as exc:
                    probes.append(repr(exc))
                await asyncio.sleep(0.02)
        finally:
            http.close()

    flags = (*ADMIN, *DRAIN, "--reuse-port")
    async with Deployment.running(redis_url, database_url, secret, *flags) as deployment:
        a = await deployment.start()
        classroom = await deployment.classroom(
            a.url, lesson_members(secret, PARTICIPANTS[:10]), transports=["websocket"]
        )
        prober = asyncio.ensure_future(probe(a.url))
        try:
            assert on(redis_db, a, await classroom.all_joined(within=20))
            b = await deployment.start()
            sigterm_at = now()
            await terminate(a)
            after = await classroom.all_joined(within=REJOINED_WITHIN, since=sigterm_at)
            count = len(probes)
            await wait_for(lambda: len(probes) > count + 5, "probes after the stop")
        finally:
            prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await prober
        students, _ = keys(redis_db)
        assert on(redis_db, b, after)

    assert len(probes) > 20
    assert set(probes) == {200}, [p for p in probes if p != 200]
    assert students == {user: after[user] for user in PARTICIPANTS[:10]}


@pytest.mark.gen_test(timeout=60)
async def test_a_port_taken_without_reuse_port_exits_1_with_one_line(
    redis_db, redis_url, database_url, secret
):
    a = await Rollcall.start(redis_url, database_url, secret)
    port = a.url.rsplit(":", 1)[1]
    try:
        second = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "server.py"), "--port", port, "--redis-url", redis_url,
            "--database-url", database_url, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        async with asyncio.timeout(SERVER_START_TIMEOUT):
            _, err = await second.communicate()
    finally:
        await a.stop()
    assert second.returncode == 1
    [line] = err.decode().splitlines()
    assert f"cannot listen on 127.0.0.1:{port}" in line and "in use" in line
    assert registered(redis_db) == {a.process_id}  # it failed before registering itself


async def fetch_on(stream: tuple[asyncio.StreamReader, asyncio.StreamWriter], path: str) -> int:
    """GET `path` on an HTTP/1.1 connection kept alive (as browsers keep theirs); the status."""
    reader, writer = stream
    writer.write(f"GET {path} HTTP/1.1\r\nHost: rollcall\r\n\r\n".encode())
    status = int((await reader.readline()).split()[1])
    length = 0
    while (header := await reader.readline()) != b"\r\n":
        name, _, value = header.decode().partition(":")
        if name.lower() == "content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


@pytest.mark.gen_test(timeout=60)
async def test_a_handshake_on_a_kept_alive_connection_during_the_drain_is_refused_to_retry(
    enrolled, redis_db, redis_url, database_url, secret
):
    """The stopping process no longer listens, but an HTTP connection kept alive still reaches
    it: a new Engine.IO session there answers 401, a transport error after which the client
    retries (a Socket.IO CONNECT refused would make socket.io-client give up)."""
    flags = (*ADMIN, "--shutdown-drain", "5", "--handover-grace", "10")
    handshake = "/socket.io/?EIO=4&transport=polling"
    async with Deployment.running(redis_url, database_url, secret, *flags) as deployment:
        a = await deployment.start()
        classroom = await deployment.classroom(a.url, lesson_members(secret, PARTICIPANTS))
        stream = await asyncio.open_connection("127.0.0.1", deployment.port)
        try:
            await classroom.all_joined(within=20)
            assert await fetch_on(stream, handshake) == 200
            a.server.proc.send_signal(signal.SIGTERM)
            await wait_for(lambda: a.lines_with("HANDED_OVER"), "the drain")
            assert await fetch_on(stream, handshake) == 401
            assert not a.lines_with("handed over")  # still draining
        finally:
            stream[1].close()
