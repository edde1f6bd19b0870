"""join_lesson benchmark: our server against the design-document baseline, same data, same load.

What is measured: acks/s, request -> ack latency (p50, p99) and errors of join_lesson under the
closed-loop load of bench/loadgen.py --mode join_lesson (--connections WebSockets, one join in
flight each; callers drawn uniformly from --lessons lessons x --students students, a teacher with
probability --teacher-share, else a participant, each with an HS256 access token (a teacher its own
teacher token, which our server verifies and the baseline, like the design document, ignores).
With --spread sticky (default) each connection is one caller re-joining one lesson; with --spread
hop every join picks caller and lesson anew, so connections keep switching lessons (our server
then also clears what the socket held in its previous lesson; the baseline, following the design
document, does not).

How, in one run:
  1. a throwaway Redis (port --redis-port) and PostgreSQL (--pg-port) under .run/bench, started by
     scripts/services.sh pinned to core 1 (with the load generator), so that core 0 is the
     server's alone; they are stopped at the end unless --keep-services. A port someone else
     already listens on is replaced by a free one, and the run refuses to flush or truncate
     stores that are not the ones it started;
  2. store/schema.sql, then --lessons lessons of --seats seats, and a student_attend row (a seat)
     for the first --seated students of every lesson;
  3. for each server in turn (--servers, default baseline then ours), --rounds times: FLUSHALL,
     start it pinned to core 0, wait for its Engine.IO handshake, run the load from core 1, stop
     it; the Redis keys it wrote are counted by kind while the clients are still connected
     (both servers must leave the same keys: the same counts with sticky callers, the same kinds
     with hopping ones; our server's own bookkeeping, the rollcall:… keys such as the lesson
     rosters and its held record, is counted apart and not compared); each server's best round
     by acks/s is reported, with the median over all rounds of its acks per server CPU-second;
       baseline  bench/baseline_join_server.py (python-socketio, aiopg, redis.asyncio, asyncio loop)
       ours      server.py at its default flags (uvloop, INFO logging, to a file here as under
                 `make run` redirected), but its per-connection join rate limit and
                 per-address connection limit raised far above the load
  4. print a table and check the target: ours >= 4x baseline acks/s, p99 <= 1/3 of the
     baseline's, zero errors, same keys (exit status 1 if missed).
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from typing import Any

import harness
import psycopg2
import psycopg2.extras
import redis
from loadgen import DEFAULT_SECRET as SECRET
from loadgen import lesson_name, student_name

from store.keys import BOOKKEEPING_PREFIX

RUN_DIR = harness.REPO / ".run" / "bench"
LOG_DIR = RUN_DIR / "logs"
SERVICES = harness.REPO / "scripts" / "services.sh"
TARGET_RATIO = 4.0
#: ours' p99 at most this share of the baseline's
TARGET_P99_SHARE = 1 / 3
# Our server's abuse limits (5 joins/s per connection, 50 connections per address by default)
# would answer most of this load RATE_LIMITED or refuse it: the load generator's connections all
# come from 127.0.0.1 and join back to back. They are raised far above the load, not turned off,
# so that their bookkeeping is still paid for on every join (one connection does < 100 joins/s).
OURS_LIMITS = ("--join-rate", "1000", "--join-burst", "10000",
               "--max-connections-per-ip", "100000")
LINGER = 2.0  # seconds the clients stay connected after the window, while the keys are counted
#: ours only: rollcall's own keys (the lesson rosters, its liveness and held record), which the
#: baseline has no counterpart of
BOOKKEEPING = "rollcall bookkeeping"
KEY_KINDS = (("lesson_seat_", "seat maps"), ("lesson_teacher_", "teacher maps"),
             ("lesson_student_", "student maps"), ("bench-client-", "client hashes"),
             ("bench-teacher-", "teacher user hashes"), (BOOKKEEPING_PREFIX, BOOKKEEPING))


def services(action: str, redis_port: int = 0, pg_port: int = 0) -> None:
    argv = [str(SERVICES), action, str(RUN_DIR)]
    if action == "start":
        argv = harness.pinned(harness.CLIENT_CORE, [*argv, str(redis_port), str(pg_port)])
    subprocess.run(argv, check=True, cwd=harness.REPO)


def port_or_free(preferred: int) -> int:
    """preferred if nothing listens there, else a free port (others' services may hold it)."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
        except OSError:
            port = harness.free_port()
            print(f"port {preferred} is in use; using {port}", file=sys.stderr)
            return port
    return preferred


def load_data(database_url: str, args: argparse.Namespace) -> None:
    """Schema, then exactly the bench lessons and seats (anything else in the tables is removed)."""
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute((harness.REPO / "store" / "schema.sql").read_text())
        cur.execute("TRUNCATE student_attend, lesson")
        psycopg2.extras.execute_values(
            cur, "INSERT INTO lesson (id, seat_count) VALUES %s",
            [(lesson_name(i), args.seats) for i in range(args.lessons)])
        psycopg2.extras.execute_values(
            cur, "INSERT INTO student_attend (lesson_id, student_id, seat) VALUES %s",
            [(lesson_name(i), student_name(n), n + 1)
             for i in range(args.lessons) for n in range(args.seated)])
    conn.close()


def key_census(client: redis.Redis) -> dict[str, int]:
    """The keys by kind; our server's own bookkeeping is one kind, which the baseline has none
    of."""
    counts: Counter[str] = Counter()
    for key in client.scan_iter(count=1000):
        kind = next((label for prefix, label in KEY_KINDS if key.startswith(prefix)), "other")
        counts[kind] += 1
    return dict(counts)


def server_argv(name: str, port: int, redis_url: str, database_url: str) -> list[str]:
    stores = ["--port", str(port), "--redis-url", redis_url, "--database-url", database_url,
              "--access-token-secret", SECRET]
    if name == "baseline":
        return [harness.PYTHON, str(harness.BENCH / "baseline_join_server.py"), *stores]
    return [harness.PYTHON, str(harness.REPO / "server.py"), *stores, *OURS_LIMITS]


def measure(name: str, client: redis.Redis, redis_url: str, database_url: str,
            loadgen_args: Sequence[str]) -> dict[str, Any]:
    """One server, fresh Redis: start, load, stop; the loadgen record plus the key census."""
    client.flushall()
    port = harness.free_port()
    print(f"-- {name} (port {port})", file=sys.stderr, flush=True)
    argv = server_argv(name, port, redis_url, database_url)
    with harness.server(argv, port, LOG_DIR / f"join-{name}.log") as proc:
        return harness.run_loadgen(
            port, proc.pid, ["--mode", "join_lesson", "--linger", str(LINGER), *loadgen_args],
            on_result=lambda result: result.update(keys=key_census(client)))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-c", "--connections", type=int, default=50)
    p.add_argument("-d", "--duration", type=float, default=10.0, help="measured seconds per run")
    p.add_argument("-w", "--warmup", type=float, default=2.0, help="unmeasured seconds per run")
    p.add_argument("--rounds", type=int, default=2, help="times each server is measured")
    p.add_argument("--servers", default="baseline,ours", help="comma-separated: baseline, ours")
    p.add_argument("--lessons", type=int, default=50)
    p.add_argument("--seats", type=int, default=40, help="seat_count of every lesson")
    p.add_argument("--students", type=int, default=40, help="participants per lesson in the load")
    p.add_argument("--seated", type=int, default=30,
                   help="participants per lesson with a student_attend row")
    p.add_argument("--teacher-share", type=float, default=0.1)
    p.add_argument("--spread", choices=("sticky", "hop"), default="sticky",
                   help="see bench/loadgen.py: re-join one lesson per connection, or switch")
    p.add_argument("--redis-port", type=int, default=6392)
    p.add_argument("--pg-port", type=int, default=5442)
    p.add_argument("--keep-services", action="store_true",
                   help="leave Redis and PostgreSQL running afterwards")
    args = p.parse_args(argv)
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    if set(args.servers) - {"baseline", "ours"}:
        p.error("--servers takes baseline and/or ours")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    services("stop")  # a fresh start, so that the pinning below applies
    redis_port, pg_port = port_or_free(args.redis_port), port_or_free(args.pg_port)
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    database_url = f"postgresql://rollcall@127.0.0.1:{pg_port}/rollcall"
    loadgen_args = ["-c", str(args.connections), "-d", str(args.duration), "-w", str(args.warmup),
                    "--secret", SECRET, "--lessons", str(args.lessons),
                    "--students", str(args.students), "--teacher-share", str(args.teacher_share),
                    "--spread", args.spread]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in args.servers}
    failures: dict[str, str] = {}
    services("start", redis_port, pg_port)
    try:
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        harness.check_own_stores(client, database_url, RUN_DIR)
        load_data(database_url, args)
        for _ in range(args.rounds):
            for name in [n for n in args.servers if n not in failures]:
                try:
                    runs[name].append(measure(name, client, redis_url, database_url,
                                              loadgen_args))
                except (RuntimeError, subprocess.CalledProcessError) as exc:
                    failures[name] = f"failed: {exc} (see .run/bench/logs/join-{name}.log)"
        client.close()
    finally:
        if not args.keep_services:
            services("stop")

    results = {name: harness.best_run(r) for name, r in runs.items() if r}
    print(f"\nMachine: {harness.machine()}")
    print(f"Load: join_lesson, {args.connections} connections, {args.warmup:g} s warm-up + "
          f"{args.duration:g} s measured, best of {args.rounds} round(s); "
          f"{args.lessons} lessons x {args.students} participants ({args.seated} seated), "
          f"{args.teacher_share:.0%} teachers, spread {args.spread}\n")
    rows = [[name, *harness.result_cells(r)] for name, r in results.items()]
    rows += [[name, *harness.missing_cells(why)] for name, why in failures.items()]
    print(harness.table(["server", *harness.RESULT_HEADERS], rows))
    for name, r in results.items():
        codes = f", error acks by code {r['error_codes']}" if r["error_codes"] else ""
        print(f"{name}: Redis keys written {r['keys']}{codes}")
    print()
    return check_target(results, args.spread)


def keys_check(spread: str, ours: dict[str, int], base: dict[str, int]) -> tuple[str, bool]:
    """Sticky callers are the same in both runs, so both must leave exactly the same key counts;
    hopping ones differ by chance (and our server clears a lesson a socket left), so only the
    kinds of keys must match. Our own bookkeeping keys are not compared."""
    ours = {kind: count for kind, count in ours.items() if kind != BOOKKEEPING}
    if spread == "sticky":
        return "same Redis keys, per kind, as baseline", ours == base
    return "same kinds of Redis keys as baseline", set(ours) == set(base)


def check_target(results: dict[str, dict[str, Any]], spread: str) -> int:
    if "ours" not in results or "baseline" not in results:
        print(f"target ours >= {TARGET_RATIO:g}x baseline: not measured")
        return 0
    ours, base = results["ours"], results["baseline"]
    ratio = ours["acks_per_s"] / base["acks_per_s"]
    errors = ours["error_acks"] + ours["transport_errors"]
    checks = [(f"acks/s {ratio:.2f}x baseline (>= {TARGET_RATIO:g}x; median acks per server "
               f"CPU-second {harness.per_cpu_ratio(ours, base)})", ratio >= TARGET_RATIO),
              (f"p99 {ours['p99_ms']:.2f} ms vs baseline {base['p99_ms']:.2f} ms "
               f"(<= {TARGET_P99_SHARE:.2f}x)",
               ours["p99_ms"] <= base["p99_ms"] * TARGET_P99_SHARE),
              (f"errors {errors} (== 0)", errors == 0),
              keys_check(spread, ours["keys"], base["keys"])]
    for text, ok in checks:
        print(f"target ours: {text}: {'PASS' if ok else 'MISS'}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
