"""Issue 6 load case: a whole school joins at 9:00, then sits in class.

N WebSocket connections (default 2000) open and each emits one join_lesson within a few seconds;
then they stay connected, answering pings, for --idle seconds. With --offer deflate every client
offers permessage-deflate as browsers do (`permessage-deflate; client_max_window_bits`), with
--offer none it offers nothing; --offer none,deflate (the default) measures both, a fresh server
each. Checked: every join acknowledged
SUCCESS and every participant's presence keys in Redis (its `{client_id}` hash and its field of
`lesson_student_{lesson_id}`, both naming its sid). Measured: how long the joins took, the ack
latency, the server's resident memory before and after, per idle connection, and how many
connections negotiated compression.

It starts server.py (pinned to core 0, as bench/harness.py does; the load runs on core 1) at its
default flags (logging at INFO to a file) but one: --max-connections-per-ip 0, as every client
here is 127.0.0.1 and the default (1000) would refuse the rest. --server-flag adds one (e.g.
--server-flag=--websocket-compression). It has a Redis and PostgreSQL of its own under
.run/load-idle (scripts/services.sh, on free ports of 127.0.0.1; the bench data of
bench/join_bench.py), and raises the file-descriptor limit of itself and of the server (a child,
which inherits it) to what one side of N connections needs.

    .venv/bin/python bench/load_idle.py                 # 3000 connections, 20 s idle, ~2 min
    .venv/bin/python bench/load_idle.py -n 10000        # ~4 min
    .venv/bin/python bench/load_idle.py -n 500 --idle 5 --offer deflate
    .venv/bin/python bench/load_idle.py -n 2000 --idle 5 --offer none --heap-profile .run/heap

--heap-profile DIR runs the server under tracemalloc (bench/heap_server.py) and has it dump a
snapshot at the baseline (DIR/<offer>/0.snap) and after the idle time (1.snap); compare them with
bench/heap_diff.py. Its RSS figures are then the traced server's, not comparable with a plain run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import harness
import join_bench
import jwt
import redis
import uvloop
from loadgen import DEFAULT_SECRET as SECRET
from loadgen import lesson_name, student_name, websocket_url

SUCCESS_ACK = '431[{"status":"SUCCESS","data":{}}]'
JOIN_ACK_ID = 1
OPEN_CONCURRENCY = 200  # handshakes in flight at once, as a school's browsers would spread them
WARMUP_CONNECTIONS = 20  # joined and closed before the baseline, so lazy set-up is not counted
FDS_PER_CONNECTION = 1  # each side: the server its accepted socket, the client its own
FD_HEADROOM = 512
#: what browsers (and aiohttp with compress=15) offer
OFFERS = {"none": 0, "deflate": 15}
KIB = 1024
SNAPSHOT_TIMEOUT = 120.0  # seconds a traced server may take to write one heap snapshot
SNAPSHOT_POLL = 0.2
RUN_DIR = harness.REPO / ".run" / "load-idle"
SERVICES = harness.REPO / "scripts" / "services.sh"


def client_name(k: int) -> str:
    return f"idle-client-{k}"


@dataclass
class Joined:
    """One client after its join: the sid the server gave it and how long the ack took."""

    k: int
    sid: str
    ack_seconds: float
    compressed: bool


@dataclass
class Run:
    """What the clients of one run saw; `settled` is set once each has joined or failed."""

    expected: int
    joined: list[Joined] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    settled: asyncio.Event = field(default_factory=asyncio.Event)

    def record(self, outcome: Joined | str) -> None:
        (self.joined if isinstance(outcome, Joined) else self.failures).append(outcome)
        if len(self.joined) + len(self.failures) == self.expected:
            self.settled.set()


def services(action: str, run_dir: Path, *ports: int) -> None:
    subprocess.run([str(SERVICES), action, str(run_dir), *map(str, ports)], check=True,
                   cwd=harness.REPO, stdout=subprocess.DEVNULL)


@contextlib.contextmanager
def own_stores(
    run_dir: Path, lessons: int, students: int
) -> Iterator[tuple[redis.Redis, str, str]]:
    """A throwaway Redis and PostgreSQL under `run_dir` on free ports (what an interrupted run
    left there is stopped first), checked to be the benchmark's own and loaded with `lessons`
    lessons of `students` seated students; yields a Redis client and both URLs, stops both."""
    redis_port, pg_port = harness.free_port(), harness.free_port()
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    database_url = f"postgresql://rollcall@127.0.0.1:{pg_port}/rollcall"
    services("stop", run_dir)
    services("start", run_dir, redis_port, pg_port)
    try:
        db = redis.Redis.from_url(redis_url, decode_responses=True)
        harness.check_own_stores(db, database_url, run_dir)
        join_bench.load_data(database_url, argparse.Namespace(
            lessons=lessons, seats=students, seated=students))
        yield db, redis_url, database_url
        db.close()
    finally:
        services("stop", run_dir)


def raise_fd_limit(needed: int) -> int:
    """Raise our soft RLIMIT_NOFILE (the server, a child, inherits it); returns the new one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return max(soft, wanted)


def rss_bytes(pid: int) -> int:
    """VmRSS of a process, from /proc/<pid>/status."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * KIB
    raise RuntimeError(f"no VmRSS for pid {pid}")


def heap_snapshot(pid: int, directory: str | None, number: int) -> None:
    """Have a server under bench/heap_server.py dump heap snapshot `number`, and wait for it
    (blocking: the server does nothing else meanwhile either)."""
    if directory is None:
        return
    path = os.path.join(directory, f"{number}.snap")
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + SNAPSHOT_TIMEOUT
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise RuntimeError(f"no heap snapshot {path} after {SNAPSHOT_TIMEOUT:g} s")
        time.sleep(SNAPSHOT_POLL)


def join_payload(k: int, lessons: int, students: int, exp: int) -> str:
    client = client_name(k)
    token = jwt.encode({"client_id": client, "exp": exp}, SECRET, algorithm="HS256")
    return json.dumps({"user_id": student_name(k % students), "lesson_id": lesson_name(k % lessons),
                       "access_token": token, "role": "student"}, separators=(",", ":"))


async def client(session: aiohttp.ClientSession, url: str, k: int, payload: str,
                 gate: asyncio.Semaphore, run: Run, idle_until: asyncio.Event,
                 limit_s: float, compress: int) -> None:
    """Connect (offering compression if compress), join, then idle answering pings until told
    to leave."""
    try:
        async with gate, asyncio.timeout(limit_s):
            ws = await session.ws_connect(url, max_msg_size=0, compress=compress)
            opening = await ws.receive_str()
            assert opening.startswith("0{"), opening
            await ws.send_str("40")
            reply = await ws.receive_str()
            assert reply.startswith("40{"), reply
            sid = json.loads(reply[2:])["sid"]
            sent = time.perf_counter()
            await ws.send_str(f'42{JOIN_ACK_ID}["join_lesson",{payload}]')
            while (text := await ws.receive_str()) == "2":
                await ws.send_str("3")
            if text != SUCCESS_ACK:
                raise AssertionError(f"ack {text[:120]}")
            run.record(Joined(k, sid, time.perf_counter() - sent, bool(ws.compress)))
    except (AssertionError, aiohttp.ClientError, TimeoutError, TypeError, OSError) as exc:
        run.record(f"{k}: {type(exc).__name__} {exc}")
        return
    try:
        while not idle_until.is_set():
            message = await ws.receive()
            if message.type is aiohttp.WSMsgType.TEXT and message.data == "2":
                await ws.send_str("3")
            elif message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                                  aiohttp.WSMsgType.ERROR):
                run.failures.append(f"{k}: closed while idle")
                return
    finally:
        await ws.close()


def missing_presence(db: redis.Redis, joined: Sequence[Joined], lessons: int) -> list[int]:
    """The clients whose presence keys do not both name their sid."""
    pipe = db.pipeline(transaction=False)
    for j in joined:
        pipe.hget(client_name(j.k), "sid")
        pipe.hget(f"lesson_student_{lesson_name(j.k % lessons)}", client_name(j.k))
    values = pipe.execute()
    return [j.k for n, j in enumerate(joined) if values[2 * n] != j.sid or
            values[2 * n + 1] != j.sid]


async def load(url: str, args: argparse.Namespace, server_pid: int, db: redis.Redis,
               compress: int, heap_dir: str | None) -> dict[str, Any]:
    exp = int(time.time()) + 3600
    payloads = [join_payload(k, args.lessons, args.students, exp)
                for k in range(WARMUP_CONNECTIONS + args.connections)]
    gate = asyncio.Semaphore(OPEN_CONCURRENCY)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        warm, leave_warm = Run(WARMUP_CONNECTIONS), asyncio.Event()
        leave_warm.set()
        await asyncio.gather(*(client(session, url, args.connections + k,
                                      payloads[args.connections + k], gate, warm, leave_warm,
                                      args.timeout, compress)
                                   for k in range(WARMUP_CONNECTIONS)))
        await asyncio.sleep(1.0)  # let the warm-up disconnects finish before the baseline
        rss_before = rss_bytes(server_pid)
        heap_snapshot(server_pid, heap_dir, 0)

        run, leave = Run(args.connections), asyncio.Event()
        started = time.perf_counter()
        tasks = [asyncio.create_task(client(session, url, k, payloads[k], gate, run, leave,
                                            args.timeout, compress))
                 for k in range(args.connections)]
        await run.settled.wait()
        joined_in = time.perf_counter() - started
        missing = missing_presence(db, run.joined, args.lessons)
        await asyncio.sleep(args.idle)
        rss_after = rss_bytes(server_pid)
        heap_snapshot(server_pid, heap_dir, 1)
        leave.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    acks = sorted(j.ack_seconds for j in run.joined)
    delta = rss_after - rss_before
    return {
        "connections": args.connections,
        "joined": len(run.joined),
        "compressed": sum(j.compressed for j in run.joined),
        "failures": len(run.failures),
        "failure_examples": run.failures[:5],
        "presence_missing": len(missing),
        "joined_in_s": round(joined_in, 2),
        "ack_p50_ms": round(acks[len(acks) // 2] * 1000, 1) if acks else None,
        "ack_p99_ms": round(acks[int(len(acks) * 0.99)] * 1000, 1) if acks else None,
        "ack_max_ms": round(acks[-1] * 1000, 1) if acks else None,
        "idle_s": args.idle,
        "rss_before_mib": round(rss_before / KIB / KIB, 1),
        "rss_after_mib": round(rss_after / KIB / KIB, 1),
        "rss_per_connection_kib": round(delta / args.connections / KIB, 1),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", "--connections", type=int, default=3000)
    p.add_argument("--offer", default="none,deflate",
                   help="comma-separated, one run each: none (no compression offered) or "
                        "deflate (permessage-deflate offered, as browsers do)")
    p.add_argument("--server-flag", action="append", default=[],
                   help="a flag added to the server's command line (repeatable)")
    p.add_argument("--idle", type=float, default=20.0, help="seconds connected after the joins")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds for one connect + join")
    p.add_argument("--lessons", type=int, default=50)
    p.add_argument("--students", type=int, default=40, help="student_attend rows per lesson")
    p.add_argument("--heap-profile", metavar="DIR",
                   help="run the server under tracemalloc and dump heap snapshots into DIR")
    args = p.parse_args(argv)
    args.offer = [o.strip() for o in args.offer.split(",") if o.strip()]
    if not args.offer or set(args.offer) - set(OFFERS):
        p.error(f"--offer takes {' and/or '.join(OFFERS)}")
    return args


def measure(args: argparse.Namespace, offer: str, db: redis.Redis, redis_url: str,
            database_url: str) -> dict[str, Any]:
    """One fresh server, one offer: FLUSHALL, start, load, stop."""
    db.flushall()
    port = harness.free_port()
    heap_dir = None
    program = harness.REPO / "server.py"
    if args.heap_profile is not None:
        heap_dir = os.path.abspath(os.path.join(args.heap_profile, offer))
        os.environ["HEAP_PROFILE_DIR"] = heap_dir  # the server (a child) inherits it
        program = harness.BENCH / "heap_server.py"
    argv = [harness.PYTHON, str(program), "--port", str(port),
            "--redis-url", redis_url, "--database-url", database_url,
            "--access-token-secret", SECRET, "--max-connections-per-ip", "0",
            *args.server_flag]
    with harness.server(argv, port, join_bench.LOG_DIR / f"load-idle-{offer}.log") as proc:
        result = uvloop.run(load(websocket_url(f"http://127.0.0.1:{port}"), args, proc.pid,
                                 db, OFFERS[offer], heap_dir))
    result["offer"] = offer
    result["server_flags"] = " ".join(args.server_flag)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    os.sched_setaffinity(0, {int(harness.CLIENT_CORE)})  # the server gets core 0 to itself
    fd_limit = raise_fd_limit(FDS_PER_CONNECTION * (args.connections + WARMUP_CONNECTIONS)
                              + FD_HEADROOM)
    join_bench.LOG_DIR.mkdir(parents=True, exist_ok=True)
    with own_stores(RUN_DIR, args.lessons, args.students) as (db, redis_url, database_url):
        results = [measure(args, offer, db, redis_url, database_url) for offer in args.offer]
    print(f"Machine: {harness.machine()}", file=sys.stderr)
    ok = True
    for result in results:
        result["fd_limit"] = fd_limit
        print(json.dumps(result))
        print(f"offer {result['offer']}, server flags [{result['server_flags']}]: "
              f"{result['joined']}/{result['connections']} joined "
              f"({result['compressed']} compressed) in {result['joined_in_s']} s "
              f"(ack p50 {result['ack_p50_ms']} ms, p99 {result['ack_p99_ms']} ms, "
              f"max {result['ack_max_ms']} ms); presence missing for "
              f"{result['presence_missing']}; RSS {result['rss_before_mib']} -> "
              f"{result['rss_after_mib']} MiB after {result['idle_s']:g} s idle: "
              f"{result['rss_per_connection_kib']} KiB per connection", file=sys.stderr)
        ok = ok and result["joined"] == args.connections and not result["presence_missing"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
