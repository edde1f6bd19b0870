"""Socket.IO load generator: N WebSocket connections, each sending request -> ack in a loop.

What it measures: acknowledged requests per second and the request -> ack latency (p50, p99, max)
seen by a client, over a fixed window that follows a warm-up. Every connection keeps exactly one
request in flight, so the offered load is closed-loop: throughput = connections / latency.

How: it speaks raw Engine.IO v4 / Socket.IO v5 over aiohttp's WebSocket client on uvloop, with no
Socket.IO client library, so that one core of client can drive one core of server:
    GET /socket.io/?EIO=4&transport=websocket  ->  0{...}   (Engine.IO open)
    40                                         ->  40{"sid":...}
    42<id>["<event>",<payload>]                ->  43<id>[...]   (repeated)
    2 (ping)                                   ->  3 (pong)
A connection whose transport fails (closed, timed out, protocol error) is counted and reopened.

Payloads (--mode):
    echo         event "echo" with a small constant object; the ack must carry it back unchanged.
    join_lesson  event "join_lesson" with {"user_id","lesson_id","access_token","role"}: a mix of
                 teacher joins (with the teacher's own token: role "teacher", client id =
                 user_id) and participant joins (HS256 tokens signed with --secret) over
                 --lessons lessons of --students students each; the ack must be
                 {"status":"SUCCESS","data":{}}, anything else is an error ack (counted by code).
                 --spread sticky (default): each connection is one caller (a teacher with
                 probability --teacher-share) who re-joins the same lesson, as a client that
                 re-joins after a reconnect; --spread hop: every join picks caller and lesson anew,
                 so each connection keeps switching lessons.

Output: one line of JSON on stdout (for scripts) and one readable line on stderr, printed as soon
as the window ends; with --linger the connections then stay open that long (join_bench.py
inspects Redis while the clients are still connected) before they close. It also reports
its own CPU use over the window (client_cpu, 1.0 = one core busy), and, on Linux, how busy each core
was and how much CPU --server-pid used, so a saturated load generator shows in the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt
import uvloop

SUCCESS_ACK = '[{"status":"SUCCESS","data":{}}]'
ECHO_PAYLOAD = '{"msg":"hello","n":1}'
TOKEN_LIFETIME = 86400
DEFAULT_SECRET = "bench-secret-not-for-production-0123456789"  # >= 32 bytes, as HS256 wants
CLK_TCK = os.sysconf("SC_CLK_TCK")


class ProtocolError(Exception):
    """The server sent something the Socket.IO handshake or ack exchange does not allow."""


# ---- bench data naming, shared with join_bench.py which loads the matching rows ----


def lesson_name(i: int) -> str:
    return f"bench-lesson-{i}"


def student_name(n: int) -> str:
    return f"bench-student-{n}"


def teacher_name(i: int) -> str:
    return f"bench-teacher-{i}"


def client_name(i: int, n: int) -> str:
    return f"bench-client-{i}-{n}"


# ---- workloads: what each request carries and how its ack is judged ----


@dataclass
class Workload:
    """Makes request payloads and judges acks; one instance per connection."""

    event: str
    next_payload: Callable[[], tuple[str, str]]  # -> (payload JSON, expected ack args JSON)
    judge: Callable[[list[Any]], str | None]  # ack args -> None if fine, else an error code


def echo_workload(_rng: random.Random) -> Workload:
    expected = json.loads(ECHO_PAYLOAD)

    def judge(args: list[Any]) -> str | None:
        return None if args == [expected] else "ECHO_MISMATCH"

    return Workload("echo", lambda: (ECHO_PAYLOAD, f"[{ECHO_PAYLOAD}]"), judge)


def join_payloads(lessons: int, students: int, secret: str) -> tuple[list[str], list[list[str]]]:
    """Pre-encoded join payloads: one teacher join per lesson, and per lesson one per student."""
    exp = int(time.time()) + TOKEN_LIFETIME
    teachers = []
    participants = []
    for i in range(lessons):
        lesson = lesson_name(i)
        teacher = teacher_name(i)
        # the teacher's own token (role "teacher", client id = user_id), which rollcall requires
        teacher_token = jwt.encode({"client_id": teacher, "role": "teacher", "exp": exp}, secret,
                                   algorithm="HS256")
        teachers.append(json.dumps(
            {"user_id": teacher, "lesson_id": lesson, "access_token": teacher_token,
             "role": "teacher"}, separators=(",", ":")))
        row = []
        for n in range(students):
            client = client_name(i, n)
            # a real platform's token vouches for the user it names (its user_id claim), so
            # every participant join is counted as that student's attendance
            token = jwt.encode({"client_id": client, "sub": client, "user_id": student_name(n),
                                "exp": exp}, secret, algorithm="HS256")
            row.append(json.dumps(
                {"user_id": student_name(n), "lesson_id": lesson, "access_token": token,
                 "role": "student"}, separators=(",", ":")))
        participants.append(row)
    return teachers, participants


def join_workload_factory(
    lessons: int, students: int, secret: str, teacher_share: float, spread: str
) -> Callable[[random.Random], Workload]:
    """Join workloads: with spread "sticky" each connection is one caller who joins the same
    lesson again and again; with "hop" every join picks a caller and lesson anew (so a connection
    keeps switching lessons)."""
    teachers, participants = join_payloads(lessons, students, secret)

    def judge(args: list[Any]) -> str | None:
        ack = args[0] if args else None
        if not isinstance(ack, dict):
            return "MALFORMED_ACK"
        if ack.get("status") == "SUCCESS":
            return None
        data = ack.get("data")
        return str(data.get("code", "NO_CODE")) if isinstance(data, dict) else "NO_CODE"

    def pick(rng: random.Random) -> tuple[str, str]:
        i = rng.randrange(lessons)
        if rng.random() < teacher_share:
            return teachers[i], SUCCESS_ACK
        return participants[i][rng.randrange(students)], SUCCESS_ACK

    def make(rng: random.Random) -> Workload:
        if spread == "sticky":
            request = pick(rng)
            return Workload("join_lesson", lambda: request, judge)
        return Workload("join_lesson", lambda: pick(rng), judge)

    return make


# ---- measurement ----


@dataclass
class Window:
    """The measured interval, on the perf_counter_ns clock, and the signals around it."""

    start: int
    end: int
    go: asyncio.Event = field(default_factory=asyncio.Event)  # set: start requesting
    release: asyncio.Event = field(default_factory=asyncio.Event)  # set: close the connections


@dataclass
class Stats:
    """What the connections record: latencies of successful acks inside the window, error acks
    by code, transport errors by kind, and successful handshakes (reopenings included)."""

    latencies_ns: list[int] = field(default_factory=list)
    error_codes: Counter[str] = field(default_factory=Counter)
    transport_errors: Counter[str] = field(default_factory=Counter)
    connected: int = 0


def cpu_ticks_per_core() -> dict[str, tuple[int, int]]:
    """(busy, total) jiffies of each core from /proc/stat; empty where it does not exist."""
    cores = {}
    try:
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith("cpu") and line[3].isdigit():
                    name, *values = line.split()
                    ticks = [int(v) for v in values]
                    idle = ticks[3] + ticks[4]  # idle + iowait
                    cores[name[3:]] = (sum(ticks[:8]) - idle, sum(ticks[:8]))
    except OSError:
        pass
    return cores


def process_cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process, from /proc/<pid>/stat."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class CpuSample:
    own: float
    server: float | None
    cores: dict[str, tuple[int, int]]

    @classmethod
    def take(cls, server_pid: int | None) -> CpuSample:
        server = process_cpu_seconds(server_pid) if server_pid else None
        return cls(own_cpu_seconds(), server, cpu_ticks_per_core())


# ---- one connection ----


async def handshake(ws: aiohttp.ClientWebSocketResponse) -> None:
    opening = await ws.receive_str()
    if not opening.startswith("0{"):
        raise ProtocolError(f"expected an Engine.IO open packet, got {opening[:40]!r}")
    await ws.send_str("40")
    while True:
        reply = await ws.receive_str()
        if reply == "2":
            await ws.send_str("3")
        elif reply.startswith("40{"):
            return
        else:
            raise ProtocolError(f"expected 40{{...}}, got {reply[:40]!r}")


async def request_loop(
    ws: aiohttp.ClientWebSocketResponse,
    workload: Workload,
    window: Window,
    stats: Stats,
    ack_timeout: float,
) -> None:
    """Send request -> wait for its ack, until the window ends; record what falls inside it."""
    clock = time.perf_counter_ns
    prefix = f'["{workload.event}",'
    ack_id = 0
    while clock() < window.end:
        ack_id += 1
        payload, expected_args = workload.next_payload()
        ack_head = f"43{ack_id}["
        sent = clock()
        async with asyncio.timeout(ack_timeout):
            await ws.send_str(f"42{ack_id}{prefix}{payload}]")
            while True:
                text = await ws.receive_str()
                if text.startswith(ack_head):
                    break
                if text == "2":
                    await ws.send_str("3")
                elif not text.startswith("42"):  # broadcasts (42...) are ignored
                    raise ProtocolError(f"unexpected packet {text[:40]!r}")
        done = clock()
        if sent < window.start or done > window.end:
            continue
        args_text = text[len(ack_head) - 1:]
        if args_text != expected_args:
            try:
                code = workload.judge(json.loads(args_text))
            except ValueError:
                code = "UNPARSABLE_ACK"
            if code is not None:
                stats.error_codes[code] += 1
                continue
        stats.latencies_ns.append(done - sent)


async def connection(
    session: aiohttp.ClientSession,
    url: str,
    workload: Workload,
    window: Window,
    stats: Stats,
    connected: asyncio.Event,
    ack_timeout: float,
) -> None:
    """One client: connect, wait for the start signal, then request in a loop; reopen on failure.

    After the window it keeps the connection open until window.release is set."""
    while True:
        ws = None
        try:
            async with asyncio.timeout(ack_timeout):
                ws = await session.ws_connect(url, autoping=True, max_msg_size=0)
                await handshake(ws)
        except (aiohttp.ClientError, TimeoutError, ProtocolError, TypeError, OSError) as exc:
            # receive_str raises TypeError when the socket closes instead of sending text
            stats.transport_errors[f"connect:{type(exc).__name__}"] += 1
            if ws is not None:
                await ws.close()
            connected.set()
            if time.perf_counter_ns() >= window.end:
                return
            await asyncio.sleep(0.1)
            continue
        stats.connected += 1
        connected.set()
        await window.go.wait()
        try:
            await request_loop(ws, workload, window, stats, ack_timeout)
            await window.release.wait()
            return
        except (aiohttp.ClientError, TimeoutError, ProtocolError, TypeError, OSError) as exc:
            stats.transport_errors[type(exc).__name__] += 1
            if time.perf_counter_ns() >= window.end:
                return
        finally:
            await ws.close()


# ---- the run ----


@dataclass
class Options:
    url: str
    mode: str
    connections: int
    duration: float
    warmup: float
    timeout: float
    secret: str
    lessons: int
    students: int
    teacher_share: float
    spread: str
    seed: int
    server_pid: int | None
    linger: float


def websocket_url(base: str) -> str:
    base = base.rstrip("/")
    if base.startswith("http"):
        base = "ws" + base[4:]
    return f"{base}/socket.io/?EIO=4&transport=websocket"


def percentile(sorted_values: Sequence[int], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))] / 1e6


async def run(opts: Options, on_result: Callable[[dict[str, Any]], None]) -> None:
    """Run the load described by opts; hand the result record (see summary) to on_result as soon
    as the window ends, then keep the connections open for opts.linger seconds and close them."""
    if opts.mode == "echo":
        make_workload: Callable[[random.Random], Workload] = echo_workload
    else:
        make_workload = join_workload_factory(
            opts.lessons, opts.students, opts.secret, opts.teacher_share, opts.spread)
    url = websocket_url(opts.url)
    stats = Stats()
    far = time.perf_counter_ns() + 10**15
    window = Window(far, far)  # moved to the real times once every connection is up
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        events = [asyncio.Event() for _ in range(opts.connections)]
        tasks = [
            asyncio.create_task(connection(
                session, url, make_workload(random.Random(opts.seed * 100_003 + k)),
                window, stats, events[k], opts.timeout))
            for k in range(opts.connections)
        ]
        async with asyncio.timeout(opts.timeout):
            await asyncio.gather(*(e.wait() for e in events))
        now = time.perf_counter_ns()
        window.start = now + int(opts.warmup * 1e9)
        window.end = window.start + int(opts.duration * 1e9)
        window.go.set()
        await asyncio.sleep(opts.warmup)
        before = CpuSample.take(opts.server_pid)
        await asyncio.sleep(max(0.0, (window.end - time.perf_counter_ns()) / 1e9))
        after = CpuSample.take(opts.server_pid)
        on_result(summary(opts, stats, before, after))
        await asyncio.sleep(opts.linger)
        window.release.set()
        await asyncio.wait(tasks, timeout=opts.timeout)
        for task in tasks:
            task.cancel()


def summary(opts: Options, stats: Stats, before: CpuSample, after: CpuSample) -> dict[str, Any]:
    lat = sorted(stats.latencies_ns)
    wall = opts.duration
    cores = {
        core: round((after.cores[core][0] - busy0) / max(1, after.cores[core][1] - total0), 3)
        for core, (busy0, total0) in before.cores.items() if core in after.cores
    }
    server_cpu = None
    if before.server is not None and after.server is not None:
        server_cpu = round((after.server - before.server) / wall, 3)
    return {
        "mode": opts.mode,
        "url": opts.url,
        "connections": opts.connections,
        "connected": stats.connected,
        "duration_s": opts.duration,
        "warmup_s": opts.warmup,
        "acks": len(lat),
        "acks_per_s": round(len(lat) / wall, 1),
        "p50_ms": round(percentile(lat, 0.50), 3),
        "p99_ms": round(percentile(lat, 0.99), 3),
        "max_ms": round(lat[-1] / 1e6, 3) if lat else None,
        "error_acks": sum(stats.error_codes.values()),
        "error_codes": dict(stats.error_codes),
        "transport_errors": sum(stats.transport_errors.values()),
        "transport_error_kinds": dict(stats.transport_errors),
        "client_cpu": round((after.own - before.own) / wall, 3),
        "server_cpu": server_cpu,
        "core_busy": cores,
    }


def readable(result: dict[str, Any]) -> str:
    cores = " ".join(f"cpu{c} {v:.0%}" for c, v in result["core_busy"].items())
    server = "" if result["server_cpu"] is None else f", server {result['server_cpu']:.0%}"
    return (
        f"{result['mode']}: {result['connected']}/{result['connections']} conns, "
        f"{result['duration_s']:g} s: {result['acks_per_s']:.0f} acks/s, "
        f"p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms; "
        f"errors {result['error_acks']} ack {result['error_codes'] or ''}, "
        f"{result['transport_errors']} transport {result['transport_error_kinds'] or ''}; "
        f"cpu: client {result['client_cpu']:.0%}{server}, {cores}"
    )


def parse_args(argv: Sequence[str] | None = None) -> Options:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:8000", help="server base URL")
    p.add_argument("--mode", choices=("echo", "join_lesson"), default="echo")
    p.add_argument("-c", "--connections", type=int, default=50)
    p.add_argument("-d", "--duration", type=float, default=10.0, help="measured seconds")
    p.add_argument("-w", "--warmup", type=float, default=2.0, help="unmeasured seconds first")
    p.add_argument("--timeout", type=float, default=10.0,
                   help="seconds allowed for a connect or for one request's ack")
    p.add_argument("--secret", default=DEFAULT_SECRET, help="HS256 secret of participant tokens")
    p.add_argument("--lessons", type=int, default=50, help="join_lesson: lessons to spread over")
    p.add_argument("--students", type=int, default=40, help="join_lesson: students per lesson")
    p.add_argument("--teacher-share", type=float, default=0.1,
                   help="join_lesson: fraction of joins made as the lesson's teacher")
    p.add_argument("--spread", choices=("sticky", "hop"), default="sticky",
                   help="join_lesson: each connection re-joins one lesson as one caller (sticky),"
                   " or every join picks a caller and lesson anew (hop)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--server-pid", type=int, help="report this process's CPU over the window")
    p.add_argument("--linger", type=float, default=0.0,
                   help="seconds to keep the connections open after printing the result")
    return Options(**vars(p.parse_args(argv)))


def main(argv: Sequence[str] | None = None) -> int:
    def report(result: dict[str, Any]) -> None:
        print(json.dumps(result), flush=True)
        print(readable(result), file=sys.stderr, flush=True)

    uvloop.run(run(parse_args(argv), report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
