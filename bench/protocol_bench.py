"""Protocol benchmark: our Socket.IO layer against python-socketio and a bare Engine.IO echo.

What is measured: acks/s and request -> ack latency for a trivial ack handler
(`@sio.on('echo') async def echo(sid, data): return data`), under the same closed-loop load from
bench/loadgen.py (--connections WebSockets, each with one request in flight, --duration seconds
measured after --warmup). Servers, one after another, each a separate process on core 0:

    ours              protocol.Server, on uvloop                  bench/servers/echo_protocol.py
    socketio          python-socketio AsyncServer(async_mode='tornado'),
                      defaults, default asyncio loop              bench/servers/echo_socketio.py
    engineio          bare python-engineio echo, on uvloop        bench/servers/echo_engineio.py
    engineio-asyncio  the same bare echo on the default asyncio loop
    socketio-uvloop   python-socketio on uvloop (only when listed in --servers)

The load generator runs on core 1. With --rounds N the servers are run in turn N times (spreading
any background load evenly) and each row shows its best round by acks/s, plus the median over
all rounds of acks per server CPU-second (the steadier figure when other processes share core 0).

Targets (checked when `ours` was measured): ours >= 1.3x socketio, and ours >= 0.9x engineio
(within 10% of the bare echo on the same loop). Exit status 1 if a measured target is missed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import harness

LOG_DIR = harness.REPO / ".run" / "bench" / "logs"


@dataclass(frozen=True)
class Candidate:
    label: str
    script: str
    loop: str


CANDIDATES = {
    "ours": Candidate("ours: protocol.Server, uvloop", "echo_protocol.py", "uvloop"),
    "socketio": Candidate("python-socketio 5, asyncio loop", "echo_socketio.py", "asyncio"),
    "engineio": Candidate("bare python-engineio echo, uvloop", "echo_engineio.py", "uvloop"),
    "engineio-asyncio": Candidate("bare python-engineio echo, asyncio loop", "echo_engineio.py",
                                  "asyncio"),
    "socketio-uvloop": Candidate("python-socketio 5, uvloop", "echo_socketio.py", "uvloop"),
}
DEFAULT_SERVERS = "ours,socketio,engineio,engineio-asyncio"
TARGETS = (("ours", "socketio", 1.3), ("ours", "engineio", 0.9))


def protocol_importable() -> str | None:
    """None if `from protocol import Server, get_tornado_handler` works, else why not."""
    probe = subprocess.run(
        [harness.PYTHON, "-c", "from protocol import Server, get_tornado_handler"],
        cwd=harness.REPO, capture_output=True, text=True)
    if probe.returncode == 0:
        return None
    lines = probe.stderr.strip().splitlines()
    return lines[-1] if lines else f"exit status {probe.returncode}"


def measure(key: str, loadgen_args: Sequence[str]) -> dict[str, Any]:
    """Start one candidate server, run the load against it, stop it; the loadgen record."""
    candidate = CANDIDATES[key]
    port = harness.free_port()
    argv = [harness.PYTHON, str(harness.BENCH / "servers" / candidate.script),
            "--port", str(port), "--loop", candidate.loop]
    print(f"-- {key}: {candidate.label} (port {port})", file=sys.stderr, flush=True)
    with harness.server(argv, port, LOG_DIR / f"protocol-{key}.log") as proc:
        return harness.run_loadgen(port, proc.pid, ["--mode", "echo", *loadgen_args])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-c", "--connections", type=int, default=50)
    p.add_argument("-d", "--duration", type=float, default=8.0, help="measured seconds per run")
    p.add_argument("-w", "--warmup", type=float, default=2.0, help="unmeasured seconds per run")
    p.add_argument("--rounds", type=int, default=2, help="times each server is measured")
    p.add_argument("--servers", default=DEFAULT_SERVERS,
                   help=f"comma-separated, from: {', '.join(CANDIDATES)}")
    args = p.parse_args(argv)
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = set(args.servers) - set(CANDIDATES)
    if unknown:
        p.error(f"unknown server(s): {', '.join(sorted(unknown))}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    servers = list(args.servers)
    skipped = {}
    if "ours" in servers:
        why = protocol_importable()
        if why:
            skipped["ours"] = f"not measured: protocol is not importable ({why})"
            servers.remove("ours")
    loadgen_args = ["-c", str(args.connections), "-d", str(args.duration),
                    "-w", str(args.warmup)]
    runs: dict[str, list[dict[str, Any]]] = {key: [] for key in servers}
    for _ in range(args.rounds):
        for key in servers:
            try:
                runs[key].append(measure(key, loadgen_args))
            except (RuntimeError, subprocess.CalledProcessError) as exc:
                log = LOG_DIR / f"protocol-{key}.log"
                skipped[key] = f"failed: {exc} (see {log.relative_to(harness.REPO)})"
                servers.remove(key)
    results = {key: harness.best_run(runs[key]) for key in servers}

    print(f"\nMachine: {harness.machine()}")
    print(f"Load: echo, {args.connections} connections, {args.warmup:g} s warm-up + "
          f"{args.duration:g} s measured, best of {args.rounds} round(s)\n")
    rows = [[key, CANDIDATES[key].label, *harness.result_cells(results[key])] for key in servers]
    rows += [[key, CANDIDATES[key].label, *harness.missing_cells(why)]
             for key, why in skipped.items()]
    print(harness.table(["server", "what", *harness.RESULT_HEADERS], rows))
    print()
    return check_targets(results)


def check_targets(results: dict[str, dict[str, Any]]) -> int:
    missed = 0
    for ours, other, target in TARGETS:
        if ours not in results or other not in results:
            print(f"target {ours} >= {target}x {other}: not measured")
            continue
        ratio = results[ours]["acks_per_s"] / results[other]["acks_per_s"]
        ok = ratio >= target
        missed += not ok
        print(f"target {ours} >= {target}x {other}: {ratio:.2f}x {'PASS' if ok else 'MISS'} "
              f"(median acks per server CPU-second: "
              f"{harness.per_cpu_ratio(results[ours], results[other])})")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
