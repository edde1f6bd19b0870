"""Issue 8: join throughput with one and two `server.py --message-queue` processes, and the cost
of a room broadcast to 1 000 sockets across two processes.

What it measures, on one machine, with its own Redis and PostgreSQL (scripts/services.sh under
.run/scaleout, free ports, pinned to core 1 like join_bench.py's) and the join bench's data
(50 lessons x 40 seats, 30 seated):

  1. Join throughput (bench/loadgen.py, join_lesson, sticky callers, --rounds times, interleaved):
       one   process A (core 0) under one loadgen of -c connections (core 1); process B runs
             idle on core 1, subscribed to the message queue like A.
       two   A (core 0) and B (core 1), each under its own loadgen of -c/2 connections, both
             loadgens started together and left to the scheduler (either core): here Redis,
             PostgreSQL and the load generators share the two cores with the servers.
     For each run: acks/s, each server's CPU (/proc/<pid>/stat over loadgen's window), and, over
     the whole loadgen run, the joins the servers answered (their /metrics
     rollcall_joins_total), Redis's CPU (INFO cpu) and PostgreSQL's (postmaster and its
     backends, /proc), i.e. store CPU per join. Both servers use the join_bench limits
     (--join-rate 1000 --join-burst 10000 --max-connections-per-ip 100000).
  2. Broadcast: --clients WebSocket clients (raw Engine.IO/Socket.IO over aiohttp, in this
     process, pinned to core 1), half connected to A and half to B, each joins lesson
     bench-lesson-0 as a participant without a token (so it enters the room bench-lesson-0).
     Then a write-only python-socketio AsyncRedisManager (also in this process) emits
     --broadcasts events "ping_all" {"n": i} to that room, one at a time: broadcast i+1 is
     emitted once every client has received broadcast i. Recorded: emit -> last receipt, on
     each process's sockets and on all (p50, max over the broadcasts), and each server's CPU
     over all broadcasts (/proc/<pid>/stat) less its idle CPU over as long (measured for
     IDLE_SAMPLE seconds just before), per broadcast and per delivered message.

About 65 s with the defaults. Exit status 1 if a join got an error ack or a transport error, or a
client received anything but the broadcasts; a broadcast client whose join fails, or a broadcast
that does not reach every client within 10 s, stops the run with an error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import harness
import redis
import socketio
import uvloop
from join_bench import OURS_LIMITS, SECRET, load_data
from loadgen import CLK_TCK, handshake, lesson_name, process_cpu_seconds, websocket_url

RUN_DIR = harness.REPO / ".run" / "scaleout"
LOG_DIR = RUN_DIR / "logs"
SERVICES = harness.REPO / "scripts" / "services.sh"
ROOM = lesson_name(0)
EVENT = "ping_all"
CONNECT_CONCURRENCY = 100  # handshakes in flight while the broadcast clients connect
IDLE_SAMPLE = 2.0  # seconds: the servers' idle CPU, measured just before the broadcasts


# ---- services and servers ----


def services(action: str, redis_port: int = 0, pg_port: int = 0) -> None:
    argv = [str(SERVICES), action, str(RUN_DIR)]
    if action == "start":
        argv = harness.pinned(harness.CLIENT_CORE, [*argv, str(redis_port), str(pg_port)])
    subprocess.run(argv, check=True, cwd=harness.REPO)


@dataclass
class Server:
    name: str
    core: str
    port: int
    proc: subprocess.Popen

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu(self) -> float:
        seconds = process_cpu_seconds(self.proc.pid)
        if seconds is None:
            raise RuntimeError(f"server {self.name} is gone (see {LOG_DIR}/{self.name}.log)")
        return seconds

    def joins(self) -> float:
        """rollcall_joins_total summed over its labels, from /metrics."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as reply:
            lines = reply.read().decode().splitlines()
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines
                   if line.startswith("rollcall_joins_total{"))


@contextmanager
def servers(cores: Sequence[str], redis_url: str, database_url: str) -> Iterator[list[Server]]:
    """server.py --message-queue redis_url, one per core, started together, stopped after."""
    started: list[Server] = []
    try:
        for k, core in enumerate(cores):
            name, port = "AB"[k], harness.free_port()
            argv = [harness.PYTHON, str(harness.REPO / "server.py"), "--port", str(port),
                    "--redis-url", redis_url, "--database-url", database_url,
                    "--message-queue", redis_url, "--access-token-secret", SECRET,
                    "--log-level", "WARNING", *OURS_LIMITS]
            with open(LOG_DIR / f"{name}.log", "w") as out:
                proc = subprocess.Popen(harness.pinned(core, argv), cwd=harness.REPO,
                                        stdout=out, stderr=subprocess.STDOUT)
            started.append(Server(name, core, port, proc))
        for s in started:
            harness.wait_ready(s.proc, s.port)
        yield started
    finally:
        for s in started:
            if s.proc.poll() is None:
                s.proc.send_signal(signal.SIGTERM)
        for s in started:
            try:
                s.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                s.proc.kill()
                s.proc.wait()


# ---- store CPU ----


def redis_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def pg_cpu() -> float:
    """CPU seconds of the postmaster, its live children and the children it has reaped."""
    postmaster = int((RUN_DIR / "pg" / "postmaster.pid").read_text().split()[0])
    total = 0.0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry.name), int(fields[1])
        if pid == postmaster:
            total += sum(int(v) for v in fields[11:15]) / CLK_TCK  # utime stime cutime cstime
        elif ppid == postmaster:
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


# ---- 1. join throughput ----


def start_loadgen(server: Server, connections: int, args: argparse.Namespace,
                  core: str | None) -> subprocess.Popen:
    argv = [harness.PYTHON, str(harness.BENCH / "loadgen.py"), "--url", server.url,
            "--server-pid", str(server.proc.pid), "--mode", "join_lesson",
            "-c", str(connections), "-d", str(args.duration), "-w", str(args.warmup),
            "--secret", SECRET, "--lessons", str(args.lessons), "--students", "40",
            "--spread", "sticky", "--seed", "1" if server.name == "A" else "2"]
    return subprocess.Popen(argv if core is None else harness.pinned(core, argv),
                            cwd=harness.REPO, stdout=subprocess.PIPE, text=True)


def join_run(label: str, targets: Sequence[Server], connections: int, core: str | None,
             client: redis.Redis, args: argparse.Namespace) -> dict[str, Any]:
    """Load each target with its own loadgen, all at once; the loadgen records plus store CPU."""
    print(f"-- join throughput, {label}", file=sys.stderr, flush=True)
    joins0, redis0, pg0 = sum(s.joins() for s in targets), redis_cpu(client), pg_cpu()
    procs = [start_loadgen(s, connections, args, core) for s in targets]
    outputs = [proc.communicate()[0] for proc in procs]
    records = []
    for proc, out in zip(procs, outputs, strict=True):
        if proc.returncode != 0 or not out.startswith("{"):
            raise RuntimeError(f"loadgen failed with status {proc.returncode}")
        records.append(json.loads(out.splitlines()[0]))
    joins = sum(s.joins() for s in targets) - joins0
    return {"label": label, "loadgens": records,
            "redis_us_per_join": (redis_cpu(client) - redis0) / joins * 1e6,
            "pg_us_per_join": (pg_cpu() - pg0) / joins * 1e6}


def join_row(run: dict[str, Any]) -> list[str]:
    recs = run["loadgens"]
    acks = sum(r["acks_per_s"] for r in recs)
    cpu = sum(r["server_cpu"] for r in recs)
    errors = sum(r["error_acks"] + r["transport_errors"] for r in recs)
    return [run["label"], f"{acks:.0f}", " + ".join(f"{r['acks_per_s']:.0f}" for r in recs),
            f"{max(r['p50_ms'] for r in recs):.1f}", f"{max(r['p99_ms'] for r in recs):.1f}",
            str(errors), " + ".join(f"{r['server_cpu']:.0%}" for r in recs),
            f"{acks / cpu:.0f}", f"{run['redis_us_per_join']:.0f}",
            f"{run['pg_us_per_join']:.0f}", harness.busy_cores(recs[0])]


JOIN_HEADERS = ["processes", "acks/s", "per process", "p50 ms (worst)", "p99 ms (worst)",
                "errors", "server CPU", "acks per server CPU-s", "Redis µs/join",
                "PostgreSQL µs/join", "cores busy"]


# ---- 2. broadcast ----


@dataclass
class Broadcasts:
    """Receipt times (perf_counter_ns) of each broadcast by server index, and an event set once
    every client has received it."""

    clients: int
    count: int
    servers: int
    received: list[list[list[int]]] = field(default_factory=list)
    done: list[asyncio.Event] = field(default_factory=list)
    stray: int = 0

    def __post_init__(self) -> None:
        self.received = [[[] for _ in range(self.servers)] for _ in range(self.count)]
        self.done = [asyncio.Event() for _ in range(self.count)]

    def record(self, n: int, server: int) -> None:
        got = self.received[n]
        got[server].append(time.perf_counter_ns())
        if sum(len(g) for g in got) == self.clients:
            self.done[n].set()


async def broadcast_client(session: aiohttp.ClientSession, url: str, k: int, server: int,
                           gate: asyncio.Semaphore, joined: asyncio.Queue[str | None],
                           book: Broadcasts) -> None:
    """Connect, join ROOM's lesson (participant, no token), then record every ping_all until
    cancelled."""
    join = json.dumps({"user_id": f"bcast-{k}", "lesson_id": ROOM, "access_token": None,
                       "role": "student"}, separators=(",", ":"))
    prefix = f'42["{EVENT}",'
    ws = None
    try:
        async with gate:
            ws = await session.ws_connect(url, max_msg_size=0)
            await handshake(ws)
            await ws.send_str(f'420["join_lesson",{join}]')
            while (text := await ws.receive_str()) == "2":
                await ws.send_str("3")
        await joined.put(None if text == '430[{"status":"SUCCESS","data":{}}]' else text)
        while True:
            text = await ws.receive_str()
            if text.startswith(prefix):
                book.record(json.loads(text[len(prefix):-1])["n"], server)
            elif text == "2":
                await ws.send_str("3")
            else:
                book.stray += 1
    finally:
        if ws is not None:
            await ws.close()


async def broadcast_run(targets: Sequence[Server], redis_url: str,
                        args: argparse.Namespace) -> dict[str, Any]:
    book = Broadcasts(args.clients, args.broadcasts, len(targets))
    joined: asyncio.Queue[str | None] = asyncio.Queue()
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    queue = socketio.AsyncRedisManager(redis_url, write_only=True)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        tasks = [asyncio.create_task(broadcast_client(
            session, websocket_url(targets[k % len(targets)].url), k, k % len(targets), gate,
            joined, book)) for k in range(args.clients)]
        try:
            failed = []
            for _ in range(args.clients):
                async with asyncio.timeout(30):
                    if (reply := await joined.get()) is not None:
                        failed.append(reply)
            if failed:
                raise RuntimeError(f"{len(failed)} joins failed, e.g. {failed[0][:200]}")
            await queue.emit(EVENT, {"n": -1}, room="nobody")  # opens the Redis connection
            await asyncio.sleep(1.0)  # let the connects' and joins' after-effects settle
            idle0 = [s.cpu() for s in targets]
            await asyncio.sleep(IDLE_SAMPLE)
            cpu0 = [s.cpu() for s in targets]
            idle = [(c - i) / IDLE_SAMPLE for c, i in zip(cpu0, idle0, strict=True)]
            sent = []
            started = time.perf_counter()
            for n in range(args.broadcasts):
                sent.append(time.perf_counter_ns())
                await queue.emit(EVENT, {"n": n}, room=ROOM)
                async with asyncio.timeout(10):
                    await book.done[n].wait()
            elapsed = time.perf_counter() - started
            cpu = [s.cpu() - c for s, c in zip(targets, cpu0, strict=True)]
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    per_broadcast = [[(max(times) - t) / 1e6 for times in got]
                     for got, t in zip(book.received, sent, strict=True)]
    spans = [sorted(row[s] for row in per_broadcast) for s in range(len(targets))]
    last = sorted(max(row) for row in per_broadcast)
    return {"spans_ms": spans, "last_ms": last, "cpu_s": cpu, "idle_cpu": idle,
            "elapsed_s": elapsed, "stray": book.stray}


BROADCAST_HEADERS = ["process", "CPU while broadcasting", "CPU idle", "CPU ms per broadcast",
                     "CPU µs per delivered message", "emit -> its last receipt p50 ms", "max ms"]


def median(sorted_values: Sequence[float]) -> float:
    return sorted_values[len(sorted_values) // 2]


# ---- the run ----


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-c", "--connections", type=int, default=50,
                   help="join load connections in all (split evenly over two processes)")
    p.add_argument("-d", "--duration", type=float, default=8.0, help="measured seconds per run")
    p.add_argument("-w", "--warmup", type=float, default=2.0, help="unmeasured seconds per run")
    p.add_argument("--rounds", type=int, default=2, help="one- and two-process runs, interleaved")
    p.add_argument("--lessons", type=int, default=50)
    p.add_argument("--clients", type=int, default=1000, help="broadcast: sockets in the room")
    p.add_argument("--broadcasts", type=int, default=50, help="broadcast: how many, in turn")
    args = p.parse_args(argv)
    if min(args.rounds, args.clients, args.broadcasts) < 1 or args.connections < 2:
        p.error("--rounds, --clients and --broadcasts must be >= 1, -c >= 2")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.seats, args.seated = 40, 30  # join_bench's defaults, for its load_data
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    services("stop")  # a fresh start, so that the pinning applies
    redis_port, pg_port = harness.free_port(), harness.free_port()
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    database_url = f"postgresql://rollcall@127.0.0.1:{pg_port}/rollcall"
    services("start", redis_port, pg_port)
    try:
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        harness.check_own_stores(client, database_url, RUN_DIR)
        load_data(database_url, args)
        client.flushall()
        joins = []
        with servers([harness.SERVER_CORE, harness.CLIENT_CORE], redis_url, database_url) as ab:
            for _ in range(args.rounds):
                joins.append(join_run("one (A)", ab[:1], args.connections, harness.CLIENT_CORE,
                                      client, args))
                joins.append(join_run("two (A + B)", ab, args.connections // 2, None, client,
                                      args))
            print("-- broadcast", file=sys.stderr, flush=True)
            os.sched_setaffinity(0, {int(harness.CLIENT_CORE)})
            bcast = uvloop.run(broadcast_run(ab, redis_url, args))
        client.close()
    finally:
        services("stop")
    return report(args, joins, bcast)


def report(args: argparse.Namespace, joins: list[dict[str, Any]], bcast: dict[str, Any]) -> int:
    print(f"\nMachine: {harness.machine()}")
    print(f"Join load: join_lesson, sticky, {args.connections} connections in all, "
          f"{args.warmup:g} s + {args.duration:g} s, {args.rounds} round(s) each\n")
    print(harness.table(JOIN_HEADERS, [join_row(r) for r in joins]))
    one = [r for r in joins if len(r["loadgens"]) == 1]
    per_cpu = statistics.median(r["loadgens"][0]["acks_per_s"] / r["loadgens"][0]["server_cpu"]
                                for r in one)
    redis_us = statistics.median(r["redis_us_per_join"] for r in joins)
    pg_us = statistics.median(r["pg_us_per_join"] for r in joins)
    print(f"\nN processes, by calculation: {per_cpu:.0f} joins per server CPU-second "
          f"(median, one process) x N; Redis (one thread) at {redis_us:.0f} µs/join bounds it "
          f"at ~{1e6 / redis_us:.0f} joins/s (N ~ {1e6 / redis_us / per_cpu:.1f}); PostgreSQL "
          f"needs {pg_us:.0f} µs of CPU per join (~{pg_us / 1e6 * per_cpu:.2f} core per server "
          "process)")

    cpu, idle = bcast["cpu_s"], bcast["idle_cpu"]
    per_process = args.clients / len(cpu)
    k, elapsed = args.broadcasts, bcast["elapsed_s"]
    print(f"\nBroadcast: {args.clients} sockets in one room, {len(cpu)} processes x "
          f"{per_process:.0f}, {k} broadcasts in turn ({elapsed:.2f} s in all)\n")
    rows = []
    for name, used, rate, spans in zip("AB", cpu, idle, bcast["spans_ms"], strict=True):
        net = used - rate * elapsed
        rows.append([name, f"{used / elapsed:.0%}", f"{rate:.1%}", f"{net / k * 1e3:.1f}",
                     f"{net / k / per_process * 1e6:.0f}", f"{median(spans):.1f}",
                     f"{spans[-1]:.1f}"])
    print(harness.table(BROADCAST_HEADERS, rows))
    last = bcast["last_ms"]
    print(f"emit -> last of all {args.clients} receipts: p50 {median(last):.1f} ms, "
          f"max {last[-1]:.1f} ms; other packets received: {bcast['stray']}")
    errors = sum(r["error_acks"] + r["transport_errors"] for run in joins for r in run["loadgens"])
    return 1 if errors or bcast["stray"] else 0


if __name__ == "__main__":
    sys.exit(main())
