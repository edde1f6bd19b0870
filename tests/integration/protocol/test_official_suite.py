"""The official Socket.IO protocol test-suite (../shared/vendor/socket.io-protocol), unchanged,
passes whole against a `protocol.Server` with the configuration its README gives.

Its result is printed even when it passes, so that `make test` shows it: `N/N passed`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from tests.integration.protocol.official_suite import ROOT

#: a private network namespace (with its own loopback) for the server and mocha: the suite's
#: port, 3000, is then free whoever else is testing on this machine
NETNS = ("unshare", "--map-root-user", "--net")
SUITE_TIMEOUT = 120
STDERR_TAIL = 3000


def own_network() -> list[str]:
    """NETNS, after checking that the system lets this user make one. There is no fallback to
    the machine's own port 3000: another checkout's suite (or anything else) may hold it, and
    the run would then test that instead, or fail for a reason that is not rollcall's."""
    probe = subprocess.run([*NETNS, "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        pytest.fail(
            f"the official suite needs a network namespace of its own ({' '.join(NETNS)}), "
            f"which this system refused: {probe.stderr.strip() or f'exit {probe.returncode}'}",
            pytrace=False,
        )
    return list(NETNS)


def test_official_suite_passes_whole(capsys: pytest.CaptureFixture[str]) -> None:
    command = [
        *own_network(), sys.executable, "-m", "tests.integration.protocol.official_suite",
        "--loopback-up", "--", "--reporter=json-stream",
    ]
    run = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=SUITE_TIMEOUT, check=False
    )
    events: list[tuple[str, dict[str, Any]]] = [
        tuple(json.loads(line)) for line in run.stdout.splitlines() if line.startswith("[")
    ]
    total = next((data["total"] for kind, data in events if kind == "start"), 0)
    passed = [data["fullTitle"] for kind, data in events if kind == "pass"]
    failed = [f"{data['fullTitle']}: {data.get('err')}" for kind, data in events if kind == "fail"]
    summary = f"official Socket.IO protocol test-suite: {len(passed)}/{total} passed"
    with capsys.disabled():
        print(f"\n{summary}" + "".join(f"\n  FAILED {failure}" for failure in failed))
    assert run.returncode == 0 and not failed and total > 0 and len(passed) == total, (
        f"{summary}\n" + "\n".join(failed) + f"\nexit status {run.returncode}\n"
        + run.stderr[-STDERR_TAIL:]
    )
