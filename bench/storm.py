"""The start of the hour (issue 26): N devices (default 19,000) join one server process as fast as
it admits them, 500 handshakes in flight, then hold H seconds (default 60) answering PINGs.

The devices are raw WebSocket clients (bench/storm_devices.py: WebSocket, Engine.IO and
Socket.IO spoken by hand on asyncio's Protocol, each from its own 127.x.y.z address), in as many
load processes as keep each under --per-process devices (open files stay under 20,000 a
process). The server runs on core 0, the load on core 1 (taskset), as bench/harness.py does.

Measured for each server, in the same run:
  ours      server.py at its default flags but --max-connections-per-ip 0 (every device is
            loopback), plus any --server-flag;
  baseline  bench/baseline_join_server.py, python-socketio's design;
  ceiling   bench/servers/ceiling_ws.py, a bare Tornado WebSocket speaking just enough Engine.IO.
Figures: joins/s (joined devices over the time from the first connect to the last ack),
connect-to-ack p50/p99, devices refused (HTTP 503) and how fast, devices dropped while held,
RSS per connection (after the hold less before the storm, over the devices joined), the server's CPU
time per device over the storm (steadier than joins/s on a shared machine), the
presence keys of every device checked in Redis (its `{client_id}` hash and its field of
`lesson_student_{lesson_id}` both naming its sid), the server's CPU over the hold, and for ours
/healthz probed every PROBE_INTERVAL throughout (the storm and the hold; then apart, every
TEARDOWN_PROBE_INTERVAL, the teardown: every device leaves at once, and it lasts until the
server's /metrics counts no connection) and the error lines of its log.

    .venv/bin/python bench/storm.py -n 2000 --hold 10                 # a quick look
    .venv/bin/python bench/storm.py                                   # 19,000, all three
    .venv/bin/python bench/storm.py -n 21000 --servers ours           # past the open-file limit

Exit status 0 when every device of every server joined (or, for ours past --max-connections,
was refused at once) and held; the figures are on stdout (one JSON line per server) and as a
table on stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import queue
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Sequence
from typing import Any

import harness
import redis
from load_idle import SECRET, client_name, own_stores, raise_fd_limit, rss_bytes
from loadgen import lesson_name, process_cpu_seconds

RUN_DIR = harness.REPO / ".run" / "storm"
LOG_DIR = RUN_DIR / "logs"
SERVERS = ("ours", "baseline", "ceiling")
WARMUP_DEVICES = 20  # joined and closed before the baseline RSS, so lazy set-up is not counted
WORKER_FD_HEADROOM = 200
MAX_OPEN_FILES = 20_000  # per process, on this machine
PROBE_INTERVAL = 0.5
TEARDOWN_PROBE_INTERVAL = 0.1  # the teardown lasts a second or two: more often, or none lands
PROBE_TIMEOUT = 5.0
SLOW_PROBE = 1.0
TEARDOWN_TIMEOUT = 30.0
KIB = 1024
#: log lines of errors: a level name or a traceback; and of warnings
ERROR_LINE = re.compile(r"\b(ERROR|CRITICAL)\b|Traceback")
WARNING_LINE = re.compile(r"\bWARNING\b")
#: second octets of the source addresses: each load process of each server gets its own
FIRST_NET, NETS = 10, 240


def server_argv(name: str, port: int, redis_url: str, database_url: str,
                flags: Sequence[str]) -> list[str]:
    stores = ["--port", str(port), "--redis-url", redis_url, "--database-url", database_url,
              "--access-token-secret", SECRET]
    if name == "baseline":
        return [harness.PYTHON, str(harness.BENCH / "baseline_join_server.py"), *stores]
    if name == "ceiling":
        return [harness.PYTHON, str(harness.BENCH / "servers" / "ceiling_ws.py"),
                "--port", str(port)]
    return [harness.PYTHON, str(harness.REPO / "server.py"), *stores,
            "--max-connections-per-ip", "0", *flags]


class Worker:
    """One load process (bench/storm_devices.py on the load core); its JSON lines are read by a
    thread as they come, so that no process ever waits on a full pipe."""

    def __init__(self, port: int, first: int, count: int, net: int, in_flight: int,
                 hold: float, args: argparse.Namespace) -> None:
        argv = [harness.PYTHON, str(harness.BENCH / "storm_devices.py"), "--port", str(port),
                "--first", str(first), "--count", str(count), "--net", str(net),
                "--in-flight", str(in_flight), "--hold", str(hold),
                "--timeout", str(args.timeout), "--lessons", str(args.lessons),
                "--students", str(args.students)]
        self.proc = subprocess.Popen(harness.pinned(harness.CLIENT_CORE, argv), cwd=harness.BENCH,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))
        self.lines.put(None)

    def next(self, phase: str) -> dict[str, Any]:
        record = self.lines.get()
        if record is None or record["phase"] != phase:
            raise RuntimeError(f"load process ended before its {phase!r} line "
                               f"(status {self.proc.wait()})")
        return record

    def close(self) -> None:
        """Let it close its devices and exit."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("close\n")
        self.proc.stdin.close()
        self.proc.wait()


def start_workers(port: int, first: int, count: int, net: int, hold: float,
                  args: argparse.Namespace) -> list[Worker]:
    processes = max(1, math.ceil(count / args.per_process))
    share = math.ceil(count / processes)
    in_flight = max(1, args.in_flight // processes)
    return [Worker(port, first + w * share, min(share, count - w * share),
                   FIRST_NET + (net + w) % NETS, in_flight, hold, args)
            for w in range(processes) if w * share < count]


class Prober:
    """GET /healthz every `interval` seconds in a thread, keeping how long each answer took
    (None for no answer within PROBE_TIMEOUT)."""

    def __init__(self, port: int, interval: float = PROBE_INTERVAL) -> None:
        self.url = f"http://127.0.0.1:{port}/healthz"
        self.interval = interval
        self.times: list[float | None] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(self.url, timeout=PROBE_TIMEOUT) as reply:
                    reply.read()
                self.times.append(time.perf_counter() - started)
            except OSError:
                self.times.append(None)

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join()
        answered = [t for t in self.times if t is not None]
        return {"probes": len(self.times),
                "unanswered": len(self.times) - len(answered),
                "slow": sum(t > SLOW_PROBE for t in answered),
                "max_ms": round(max(answered) * 1000, 1) if answered else None}


def connections_open(port: int) -> float:
    """rollcall_connections summed over its transports, from /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=PROBE_TIMEOUT) as reply:
        lines = reply.read().decode().splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines
               if line.startswith("rollcall_connections{"))


def wait_connections_closed(port: int) -> None:
    """Until ours has closed every session its devices left (TEARDOWN_TIMEOUT at most)."""
    deadline = time.monotonic() + TEARDOWN_TIMEOUT
    while time.monotonic() < deadline:
        try:
            if not connections_open(port):
                return
        except OSError:
            pass  # no answer in time: still busy closing
        time.sleep(TEARDOWN_PROBE_INTERVAL)


def missing_presence(db: redis.Redis, sids: dict[str, str], lessons: int) -> int:
    """How many joined devices lack a presence key naming their sid."""
    missing = 0
    items = list(sids.items())
    for start in range(0, len(items), 5000):
        chunk = items[start:start + 5000]
        pipe = db.pipeline(transaction=False)
        for k, _sid in chunk:
            pipe.hget(client_name(int(k)), "sid")
            pipe.hget(f"lesson_student_{lesson_name(int(k) % lessons)}", client_name(int(k)))
        values = pipe.execute()
        missing += sum(values[2 * n] != sid or values[2 * n + 1] != sid
                       for n, (_k, sid) in enumerate(chunk))
    return missing


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def storm(name: str, index: int, db: redis.Redis, redis_url: str, database_url: str,
          args: argparse.Namespace) -> dict[str, Any]:
    """One fresh server: FLUSHALL, start, warm up, the storm, the hold, stop."""
    db.flushall()
    port = harness.free_port()
    log = LOG_DIR / f"storm-{name}.log"
    print(f"-- {name} (port {port}): {args.devices} devices", file=sys.stderr, flush=True)
    argv = server_argv(name, port, redis_url, database_url, args.server_flag)
    net = (int(time.time()) // 60 + index * 16) % NETS  # fresh addresses for every run
    with harness.server(argv, port, log) as proc:
        for warm in start_workers(port, args.devices, WARMUP_DEVICES, net + 8, 0, args):
            warm.next("joined")
            warm.next("held")
            warm.close()
        time.sleep(1.0)  # the warm-up's disconnects done before the baseline
        rss_before = rss_bytes(proc.pid)
        prober = Prober(port) if name == "ours" else None
        cpu_start = process_cpu_seconds(proc.pid)
        workers = start_workers(port, 0, args.devices, net, args.hold, args)
        try:
            joined = [worker.next("joined") for worker in workers]
            cpu_joined, wall_joined = process_cpu_seconds(proc.pid), time.perf_counter()
            sids = {k: sid for record in joined for k, sid in record["sids"].items()}
            missing = missing_presence(db, sids, args.lessons) if name != "ceiling" else None
            held = [worker.next("held") for worker in workers]
            cpu_held, wall_held = process_cpu_seconds(proc.pid), time.perf_counter()
            rss_after = rss_bytes(proc.pid)
        finally:
            probes = prober.stop() if prober is not None else None
            prober = Prober(port, TEARDOWN_PROBE_INTERVAL) if name == "ours" else None
            for worker in workers:
                worker.close()
            if prober is not None:
                wait_connections_closed(port)
            teardown_probes = prober.stop() if prober is not None else None
    with open(log, errors="replace") as file:
        lines = file.readlines()
    acks = [ms for record in joined for ms in record["ack_ms"]]
    refused = [ms for record in joined for ms in record["refused_ms"]]
    count = len(acks)
    span = max(r["last_ack"] for r in joined) - min(r["started"] for r in joined)
    hold_cpu = join_cpu = None
    if cpu_start is not None and cpu_joined is not None and cpu_held is not None:
        hold_cpu = (cpu_held - cpu_joined) / (wall_held - wall_joined)
        join_cpu = (cpu_joined - cpu_start) / max(count + len(refused), 1)
    return {
        "server": name, "devices": args.devices, "joined": count, "refused": len(refused),
        "failures": sum(r["failures"] for r in joined),
        "failure_examples": [e for r in joined for e in r["failure_examples"]][:5],
        "joins_per_s": round(count / span, 1) if span > 0 else None,
        "all_joined_in_s": round(span, 1),
        "ack_p50_ms": percentile(acks, 0.50), "ack_p99_ms": percentile(acks, 0.99),
        "refused_p99_ms": percentile(refused, 0.99),
        "dropped": sum(r["dropped"] for r in held), "hold_s": args.hold,
        "pongs": sum(r["pongs"] for r in held),
        "presence_missing": missing,
        "rss_before_mib": round(rss_before / KIB / KIB, 1),
        "rss_after_mib": round(rss_after / KIB / KIB, 1),
        "rss_per_connection_kib": round((rss_after - rss_before) / max(count, 1) / KIB, 2),
        "cpu_during_hold": None if hold_cpu is None else round(hold_cpu, 3),
        "cpu_ms_per_device": None if join_cpu is None else round(join_cpu * 1000, 3),
        "healthz": probes,
        "healthz_teardown": teardown_probes,
        "log_lines": len(lines),
        "error_log_lines": sum(bool(ERROR_LINE.search(line)) for line in lines),
        "warning_log_lines": sum(bool(WARNING_LINE.search(line)) for line in lines),
        "server_flags": " ".join(args.server_flag),
    }


def readable(results: Sequence[dict[str, Any]]) -> str:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f}"

    rows = []
    for r in results:
        probes = r["healthz"]
        rows.append([
            r["server"], f"{r['joined']}/{r['devices']}", str(r["refused"]),
            f"{r['joins_per_s']}", f"{r['all_joined_in_s']}", ms(r["ack_p50_ms"]),
            ms(r["ack_p99_ms"]), str(r["dropped"]),
            "-" if r["presence_missing"] is None else str(r["presence_missing"]),
            f"{r['rss_per_connection_kib']}",
            "-" if r["cpu_ms_per_device"] is None else f"{r['cpu_ms_per_device']:.2f}",
            "-" if r["cpu_during_hold"] is None else f"{r['cpu_during_hold']:.0%}",
            probe_cell(probes), probe_cell(r["healthz_teardown"]),
            f"{r['error_log_lines']}/{r['warning_log_lines']}"])
    return harness.table(["server", "joined", "refused", "joins/s", "all in s", "p50 ms",
                          "p99 ms", "dropped", "presence missing", "KiB/conn",
                          "CPU ms/device", "CPU in hold", "/healthz >1 s (+none)/probes",
                          "same, teardown", "error/warning lines"], rows)


def probe_cell(probes: dict[str, Any] | None) -> str:
    if probes is None:
        return "-"
    return f"{probes['slow']}+{probes['unanswered']}/{probes['probes']}, max {probes['max_ms']}"


def ratios(results: Sequence[dict[str, Any]]) -> str:
    by_name = {r["server"]: r for r in results}
    ours = by_name.get("ours")
    parts = []
    for other in ("baseline", "ceiling"):
        if ours and other in by_name and by_name[other]["joins_per_s"] and ours["joins_per_s"]:
            parts.append(f"ours/{other} {ours['joins_per_s'] / by_name[other]['joins_per_s']:.2f}x")
    return ", ".join(parts)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", "--devices", type=int, default=19_000)
    p.add_argument("--hold", type=float, default=60.0, help="seconds held after all joined")
    p.add_argument("--in-flight", type=int, default=500, help="handshakes in flight at once")
    p.add_argument("--servers", default=",".join(SERVERS),
                   help=f"comma-separated, in this order: {', '.join(SERVERS)}")
    p.add_argument("--server-flag", action="append", default=[],
                   help="a flag added to server.py's command line (repeatable)")
    p.add_argument("--per-process", type=int, default=10_000,
                   help="devices per load process at most")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds for one connect + join")
    p.add_argument("--students", type=int, default=40, help="devices (seats) per lesson")
    p.add_argument("--lessons", type=int, help="default: devices / students")
    args = p.parse_args(argv)
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    if not args.servers or set(args.servers) - set(SERVERS):
        p.error(f"--servers takes {', '.join(SERVERS)}")
    if args.per_process + WORKER_FD_HEADROOM > MAX_OPEN_FILES:
        p.error(f"--per-process: at most {MAX_OPEN_FILES - WORKER_FD_HEADROOM} "
                f"(a process may hold {MAX_OPEN_FILES} open files)")
    if args.lessons is None:
        args.lessons = max(1, math.ceil(args.devices / args.students))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    os.sched_setaffinity(0, {int(harness.CLIENT_CORE)})
    raise_fd_limit(args.per_process + WORKER_FD_HEADROOM)  # the load processes inherit it
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    with own_stores(RUN_DIR, args.lessons, args.students) as (db, redis_url, database_url):
        results = [storm(name, index, db, redis_url, database_url, args)
                   for index, name in enumerate(args.servers)]
    print(f"Machine: {harness.machine()}; load average {os.getloadavg()[0]:.2f}",
          file=sys.stderr)
    for result in results:
        print(json.dumps(result))
    print(readable(results), file=sys.stderr)
    if ratio := ratios(results):
        print(ratio, file=sys.stderr)
    ok = all(r["joined"] + r["refused"] == r["devices"] and not r["dropped"]
             and not r["presence_missing"] for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
