"""How long a re-assertion of presence takes (handlers/reassertion.py), for --connections live
participants spread over --lessons lessons, after Redis lost everything.

A throwaway redis-server (no persistence, a free port, a temporary directory) is started and
killed at the end. The connections are records of handlers/connections.py as the join handler
leaves them (no sockets: what is measured is the Redis side and the batching); each round
FLUSHALLs Redis, re-asserts every connection, and checks that every participant's keys are back.

    .venv/bin/python bench/reassert_bench.py --connections 20000 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

import harness
import redis

from handlers.connections import Connections
from handlers.reassertion import Reasserter
from store.presence import ParticipantJoin, PresenceStore

SEATS = 40
START_TIMEOUT = 10.0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-c", "--connections", type=int, default=20_000)
    p.add_argument("--lessons", type=int, default=500)
    p.add_argument("--rounds", type=int, default=3)
    return p.parse_args(argv)


async def connect_all(store: PresenceStore, args: argparse.Namespace) -> Connections:
    """`args.connections` joined participants, as the join handler records them."""
    connections = Connections(store)
    for n in range(args.connections):
        sid = f"sid{n}"
        await connections.connect(sid, {}, None)
        record = connections.get(sid)
        join = ParticipantJoin(
            f"lesson{n % args.lessons}", SEATS, sid, f"client{n}", "student", f"user{n}"
        )
        record.held = frozenset(join.entries)
        record.lesson_id = join.lesson_id
        connections.joined(record, join, ())
    return connections


async def run(args: argparse.Namespace, url: str) -> list[float]:
    store = PresenceStore.open(url, timeout=10.0)
    db = redis.Redis.from_url(url, decode_responses=True)
    seconds = []
    try:
        reasserter = Reasserter(store, await connect_all(store, args))
        for _ in range(args.rounds):
            db.flushall()
            started = time.perf_counter()
            result, connections, runs = await reasserter.run()
            seconds.append(time.perf_counter() - started)
            assert connections == args.connections, connections
            in_first = len(range(0, args.connections, args.lessons))
            assert db.hlen("lesson_student_lesson0") == in_first
            print(
                f"{connections} connections: {seconds[-1] * 1000:.0f} ms, {runs} round trips, "
                f"{result.keys} keys written"
            )
    finally:
        db.close()
        await store.close()
    return seconds


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    binary = shutil.which("redis-server")
    if binary is None:
        print("reassert_bench: redis-server is not installed", file=sys.stderr)
        return 1
    port = harness.free_port()
    with tempfile.TemporaryDirectory() as directory:
        server = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
             "no", "--dir", directory, "--logfile", f"{directory}/redis.log"]
        )  # fmt: skip
        try:
            url = f"redis://127.0.0.1:{port}/0"
            client = redis.Redis.from_url(url)
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            client.close()
            seconds = asyncio.run(run(args, url))
        finally:
            server.kill()
            server.wait()
    print(f"median {statistics.median(seconds) * 1000:.0f} ms over {len(seconds)} round(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
