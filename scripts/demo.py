"""Fills the demo lesson of a running `make run` with a class, with python-socketio's client.

    .venv/bin/python scripts/demo.py [--url URL] [--redis-url URL] [--admin-token TOKEN]

The teacher joins with its own teacher token, most enrolled students with their own participant
tokens (signed like scripts/demo_token.py's, with ACCESS_TOKEN_SECRET: the Makefile gives
`make run` and `make demo` the same demo secret), a student who is not enrolled joins too, a few
students leave and one of them comes back on a new connection (a reconnect). It prints the acks
and the Redis keys the joins wrote, in summary, the roll call, and the live seating chart's URL,
then keeps the class connected until Ctrl-C (which takes it out: everyone then shows as left).

Its defaults come from .run/dev/run.json, which `make run` writes while it serves.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import json
import os
import pathlib
import signal
import sys
import urllib.parse
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
import socketio
import tornado.httpclient
from demo_token import make_teacher_token, make_token

RUN_FILE = pathlib.Path(__file__).resolve().parent.parent / ".run" / "dev" / "run.json"
LESSON = "demo-lesson"
TEACHER = "ms-rivera"
#: joins without being enrolled
OUTSIDER = "guest"
#: every STAY_AWAY_EVERY-th seated student (the 6th, 12th, ...) and the last unseated one stay away
STAY_AWAY_EVERY = 6
#: positions, among the students who joined, of those who leave; the last of them comes back
LEAVING = (1, 12, 17)
ACK_TIMEOUT = 10
CONNECT_TIMEOUT = 10
LEFT_TIMEOUT = 10
POLL_STEP = 0.05
#: fields of a hash shown before the rest is summed up
SHOWN_FIELDS = 3
SUCCESS = "SUCCESS"


class DemoError(Exception):
    """The demo cannot go on: one line says why."""


@dataclasses.dataclass(frozen=True)
class Target:
    """The running rollcall the demo talks to."""

    url: str
    redis_url: str
    admin_token: str
    secret: str
    lesson_id: str = LESSON

    def view_url(self) -> str:
        token = urllib.parse.quote(self.admin_token, safe="")
        return f"{self.url}/lessons/{self.lesson_id}/view?token={token}"


@dataclasses.dataclass
class Plan:
    """Who does what, from the lesson's enrolment."""

    joining: list[str]
    staying_away: list[str]
    leaving: list[str]

    @classmethod
    def of(cls, roster: list[dict[str, Any]]) -> Plan:
        enrolled = [row for row in roster if row["enrolled"]]
        seated = [row["user_id"] for row in enrolled if row["seat"] is not None]
        unseated = [row["user_id"] for row in enrolled if row["seat"] is None]
        away = seated[STAY_AWAY_EVERY - 1::STAY_AWAY_EVERY] + unseated[-1:]
        joining = [user for user in seated + unseated if user not in away]
        if len(joining) <= max(LEAVING):
            raise DemoError(f"lesson has too few enrolled students for the demo ({len(enrolled)})")
        return cls(joining, away, [joining[i] for i in LEAVING])

    @property
    def comeback(self) -> str:
        return self.leaving[-1]


class Demo:
    """The class's connections, and what their joins answered."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.clients: dict[str, socketio.AsyncClient] = {}
        self.acks: list[tuple[str, dict[str, Any]]] = []

    async def join(self, user_id: str, role: str = "student") -> dict[str, Any]:
        """Connect a new client for `user_id` (replacing its previous one) and join with its
        own token; returns the ack, which must be SUCCESS."""
        # handle_sigint=False: Ctrl-C is main()'s, which closes the class in order
        client = socketio.AsyncClient(reconnection=False, handle_sigint=False)
        await client.connect(self.target.url, transports=["websocket"],
                             wait_timeout=CONNECT_TIMEOUT)
        self.clients[user_id] = client
        token = (make_teacher_token(user_id, self.target.secret) if role == "teacher"
                 else make_token(user_id, self.target.secret))
        ack = await client.call("join_lesson", {
            "user_id": user_id, "lesson_id": self.target.lesson_id,
            "access_token": token, "role": role,
        }, timeout=ACK_TIMEOUT)
        self.acks.append((user_id, ack))
        if ack.get("status") != SUCCESS:
            raise DemoError(f"{user_id}'s join answered {json.dumps(ack)}")
        return ack

    async def leave(self, user_ids: Sequence[str]) -> None:
        for user_id in user_ids:
            await self.clients.pop(user_id).disconnect()

    async def close(self) -> None:
        await self.leave(list(self.clients))


async def lesson(target: Target) -> dict[str, Any]:
    """GET /lessons/{lesson_id}: the presence and the roll call, as the admin."""
    try:
        reply = await tornado.httpclient.AsyncHTTPClient().fetch(
            f"{target.url}/lessons/{target.lesson_id}",
            headers={"Authorization": f"Bearer {target.admin_token}"},
        )
    except tornado.httpclient.HTTPClientError as exc:
        raise DemoError(f"GET /lessons/{target.lesson_id} answered {exc.code}: is this the "
                        "admin token of the running server (--admin-token)?") from exc
    except OSError as exc:
        raise DemoError(f"no rollcall at {target.url} ({exc}): start it with `make run`") from exc
    document = json.loads(reply.body)
    if document["roster"] is None:
        raise DemoError("the server's roster is off (--roster-ttl 0): the demo needs it")
    return document


async def until_left(target: Target, user_ids: Sequence[str]) -> None:
    """Wait until the roll call shows `user_ids` as left: their disconnects have been handled
    (the server signals nothing to a client that left, so this polls)."""
    try:
        async with asyncio.timeout(LEFT_TIMEOUT):
            while True:
                rows = {row["user_id"]: row for row in (await lesson(target))["roster"]}
                if all(rows[user]["status"] == "left" for user in user_ids):
                    return
                await asyncio.sleep(POLL_STEP)
    except TimeoutError:
        raise DemoError(f"the roll call did not show {', '.join(user_ids)} as left within "
                        f"{LEFT_TIMEOUT} s") from None


async def fill(target: Target) -> Demo:
    """The demo's whole scenario, printing as it goes; the class stays connected (the caller
    closes the returned Demo)."""
    plan = Plan.of((await lesson(target))["roster"])
    demo = Demo(target)
    try:
        ack = await demo.join(TEACHER, "teacher")
        print(f"teacher {TEACHER} joins: ack {json.dumps(ack)}")
        for user_id in plan.joining:
            await demo.join(user_id)
        print(f"{len(plan.joining)} enrolled students join, each with its own token: "
              f"{acks_summary(demo.acks[1:])}")
        print(f"  staying away: {', '.join(plan.staying_away)}")
        ack = await demo.join(OUTSIDER)
        print(f"{OUTSIDER}, not enrolled, joins: ack {json.dumps(ack)}")
        await demo.leave(plan.leaving)
        await until_left(target, plan.leaving)
        print(f"{', '.join(plan.leaving)} leave")
        ack = await demo.join(plan.comeback)
        print(f"{plan.comeback} comes back on a new connection: ack {json.dumps(ack)}")
    except BaseException:
        await demo.close()
        raise
    return demo


def acks_summary(acks: Sequence[tuple[str, dict[str, Any]]]) -> str:
    counts = collections.Counter(json.dumps(ack) for _, ack in acks)
    return ", ".join(f"{n} x ack {ack}" for ack, n in counts.items())


def shortened(value: dict[str, str]) -> dict[str, str]:
    if len(value) <= SHOWN_FIELDS + 1:
        return value
    return {**dict(list(value.items())[:SHOWN_FIELDS]), "…": f"{len(value)} fields"}


async def show_keys(target: Target, students: Sequence[str]) -> None:
    """The keys the joins wrote: the lesson's three hashes, the teacher's key, and one student's
    `{client_id}` key for all of theirs."""
    lesson_id = target.lesson_id
    db = aioredis.Redis.from_url(target.redis_url, decode_responses=True)
    try:
        keys = [f"lesson_seat_{lesson_id}", f"lesson_teacher_{lesson_id}",
                f"lesson_student_{lesson_id}", TEACHER, students[0]]
        print("Redis keys:")
        for key in keys:
            value = await db.hgetall(key)
            print(f"  {key}  hash  ttl={await db.ttl(key)}  "
                  f"{json.dumps(shortened(value), ensure_ascii=False)}")
        print(f"  … and the {{client_id}} keys of the {len(students) - 1} other participants "
              f"who joined, like {students[0]}'s")
    finally:
        await db.aclose()


def roll_call_summary(document: dict[str, Any]) -> str:
    counts = document["counts"]
    outsiders = sum(not row["enrolled"] for row in document["roster"])
    return (f"present {counts['present']}, left {counts['left']}, absent {counts['absent']} "
            f"of {counts['enrolled']} enrolled; not enrolled {outsiders}")


async def main(target: Target) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    demo = await fill(target)
    try:
        joined = [user for user, _ in demo.acks if user != TEACHER]
        await show_keys(target, list(dict.fromkeys(joined)))
        print(f"Roll call (GET /lessons/{target.lesson_id}): "
              f"{roll_call_summary(await lesson(target))}")
        print(f"The live seating chart: {target.view_url()}")
        print("The class stays connected; Ctrl-C takes it out.", flush=True)
        await stop.wait()
    finally:
        await demo.close()


def run_file() -> dict[str, str]:
    """What `make run` wrote about itself, or nothing when it does not run."""
    try:
        return json.loads(RUN_FILE.read_text())
    except FileNotFoundError:
        return {}


def parse_target(argv: Sequence[str]) -> Target:
    running = run_file()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=running.get("url"),
                        help="the server (default: the running `make run`'s)")
    parser.add_argument("--redis-url", default=running.get("redis_url"),
                        help="its Redis (default: the running `make run`'s)")
    parser.add_argument("--admin-token", default=os.environ.get("ADMIN_TOKEN")
                        or running.get("admin_token"),
                        help="its --admin-token (default: ADMIN_TOKEN, else `make run`'s)")
    args = parser.parse_args(argv)
    secret = os.environ.get("ACCESS_TOKEN_SECRET")
    if not (args.url and args.redis_url and args.admin_token):
        parser.exit(1, "demo: no `make run` is serving here (.run/dev/run.json): start it in "
                       "another terminal, or pass --url, --redis-url and --admin-token\n")
    if not secret:
        parser.exit(1, "demo: set ACCESS_TOKEN_SECRET to the server's (the Makefile sets it)\n")
    return Target(args.url, args.redis_url, args.admin_token, secret)


if __name__ == "__main__":
    target = parse_target(sys.argv[1:])
    try:
        asyncio.run(main(target))
    except (DemoError, TimeoutError, OSError, socketio.exceptions.SocketIOError) as exc:
        sys.exit(f"demo: {exc or type(exc).__name__}")
