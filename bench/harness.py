"""Plumbing the benchmark drivers share: pinned server processes, readiness, running loadgen.

The server under test runs on core 0 (`taskset -c 0`) and the load generator on core 1, both on a
free port of 127.0.0.1. A server is ready when its Engine.IO polling handshake answers `0{...}`;
it is stopped with SIGTERM (SIGKILL if it lingers).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import psycopg2

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PYTHON = sys.executable
SERVER_CORE = "0"
CLIENT_CORE = "1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_own_stores(redis_client: Any, database_url: str, run_dir: Path) -> None:
    """Refuse to flush or truncate a Redis or PostgreSQL that this run did not start under
    run_dir (another checkout's, or a developer's): compare Redis's process id and PostgreSQL's
    data directory with what scripts/services.sh left there."""
    if redis_client.info("server")["process_id"] != int((run_dir / "redis.pid").read_text()):
        raise RuntimeError(f"the Redis on the bench port is not the one under {run_dir}")
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SHOW data_directory")
        data_dir = cur.fetchone()[0]
    conn.close()
    if Path(data_dir).resolve() != (run_dir / "pg").resolve():
        raise RuntimeError(f"the PostgreSQL on the bench port serves {data_dir}, not {run_dir}")


def pinned(core: str, argv: Sequence[str]) -> list[str]:
    return ["taskset", "-c", core, *argv]


def wait_ready(proc: subprocess.Popen, port: int, timeout: float = 20.0) -> None:
    """Poll the Engine.IO handshake until it answers, the process dies, or timeout passes.

    The Engine.IO session the handshake opened is closed again, so that it does not count
    against a per-address connection limit during the run.
    """
    url = f"http://127.0.0.1:{port}/socket.io/?EIO=4&transport=polling"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=1) as reply:
                opening = reply.read()
            if opening.startswith(b"0{"):
                sid = json.loads(opening[1:])["sid"]
                urllib.request.urlopen(f"{url}&sid={sid}", data=b"1", timeout=1).close()
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"server on port {port} not ready after {timeout:g} s")


@contextmanager
def server(argv: Sequence[str], port: int, log: Path) -> Iterator[subprocess.Popen]:
    """Run argv pinned to the server core, wait until it serves on port, stop it afterwards."""
    with open(log, "w") as out:
        proc = subprocess.Popen(pinned(SERVER_CORE, argv), cwd=REPO, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        wait_ready(proc, port)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def run_loadgen(
    port: int,
    server_pid: int,
    args: Sequence[str],
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run bench/loadgen.py pinned to the client core against port and return its JSON record.

    on_result, if given, is called with the record as soon as loadgen prints it, i.e. while its
    connections are still open if args has --linger. loadgen's readable line goes to our stderr.
    """
    argv = [PYTHON, str(BENCH / "loadgen.py"), "--url", f"http://127.0.0.1:{port}",
            "--server-pid", str(server_pid), *args]
    with subprocess.Popen(pinned(CLIENT_CORE, argv), cwd=REPO, stdout=subprocess.PIPE,
                          text=True) as proc:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        result = json.loads(line) if line.startswith("{") else None
        if result is not None and on_result is not None:
            on_result(result)
        proc.stdout.read()
    if proc.returncode != 0 or result is None:
        raise subprocess.CalledProcessError(proc.returncode, argv)
    return result


def machine() -> str:
    """One line naming the CPU, the core count and the versions that matter here."""
    import tornado
    import uvloop

    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f
                         if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{os.cpu_count()} cores, {model}; Python {sys.version.split()[0]}, "
            f"uvloop {uvloop.__version__}, tornado {tornado.version}, "
            f"python-engineio {metadata.version('python-engineio')}, "
            f"python-socketio {metadata.version('python-socketio')}")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table, columns padded so it also reads well in a terminal."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|",
                      *(line(r) for r in rows)])


def result_cells(r: dict[str, Any]) -> list[str]:
    """The RESULT_HEADERS cells of one loadgen record."""
    cpu = r["server_cpu"]
    per_cpu = f"{r['acks_per_s'] / cpu:.0f}" if cpu else "?"
    median = r.get("median_per_cpu")
    return [f"{r['acks_per_s']:.0f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}",
            f"{r['error_acks']}/{r['transport_errors']}", "?" if cpu is None else f"{cpu:.0%}",
            per_cpu, "?" if median is None else f"{median:.0f}", f"{r['client_cpu']:.0%}",
            busy_cores(r)]


def best_run(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The run with the most acks/s (other load on the machine only ever slows a run down), plus
    median_per_cpu: the median over all runs of acks per server CPU-second."""
    best = dict(max(runs, key=lambda r: r["acks_per_s"]))
    per_cpu = [r["acks_per_s"] / r["server_cpu"] for r in runs if r["server_cpu"]]
    best["median_per_cpu"] = statistics.median(per_cpu) if per_cpu else None
    return best


def per_cpu_ratio(a: dict[str, Any], b: dict[str, Any]) -> str:
    """Ratio of a's and b's median acks per server CPU-second, as text ("?" without them)."""
    if not (a["median_per_cpu"] and b["median_per_cpu"]):
        return "?"
    return f"{a['median_per_cpu'] / b['median_per_cpu']:.2f}x"


def missing_cells(why: str) -> list[str]:
    """RESULT_HEADERS cells for a server that was not measured: the reason, then blanks."""
    return [why, *[""] * (len(RESULT_HEADERS) - 1)]


def busy_cores(r: dict[str, Any]) -> str:
    return " ".join(f"{v:.0%}" for v in r["core_busy"].values())


# "acks per server CPU-s" divides out CPU the server did not get because other processes ran on
# its core (that of the run shown, then the median over all rounds); "cores busy" shows how busy
# each core was in all (core 0, core 1).
RESULT_HEADERS = ["acks/s", "p50 ms", "p99 ms", "errors ack/transport", "server CPU",
                  "acks per server CPU-s", "median of rounds", "client CPU", "cores busy"]
