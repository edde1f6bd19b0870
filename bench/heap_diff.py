"""What grew between two tracemalloc snapshots of bench/heap_server.py, per connection.

    .venv/bin/python bench/heap_diff.py BEFORE.snap AFTER.snap -n 3000 [--by lineno|traceback]

Prints the total growth, then the largest entries grouped by the allocating line (or by the
whole traceback, its innermost frames first), each as bytes per connection.
"""

from __future__ import annotations

import argparse
import sys
import tracemalloc
from collections.abc import Sequence

#: allocations of the tracer and of the snapshot machinery itself
IGNORED = ("<frozen importlib._bootstrap>", "<frozen importlib._bootstrap_external>",
           tracemalloc.__file__, "<unknown>")


def report(before: str, after: str, connections: int, key: str, top: int,
           frames: int) -> None:
    filters = [tracemalloc.Filter(False, pattern) for pattern in IGNORED]
    old = tracemalloc.Snapshot.load(before).filter_traces(filters)
    new = tracemalloc.Snapshot.load(after).filter_traces(filters)
    stats = new.compare_to(old, key)
    total = sum(s.size_diff for s in stats)
    count = sum(s.count_diff for s in stats)
    print(f"growth: {total / 1024 / 1024:.1f} MiB in {count} blocks; "
          f"{total / connections:.0f} B and {count / connections:.1f} blocks per connection")
    for stat in stats[:top]:
        where = stat.traceback.format(limit=frames, most_recent_first=True)
        print(f"{stat.size_diff / connections:8.0f} B {stat.count_diff / connections:6.2f} blk  "
              + "\n                        ".join(line.strip() for line in where
                                                  if not line.startswith("    ")))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("before")
    p.add_argument("after")
    p.add_argument("-n", "--connections", type=int, required=True)
    p.add_argument("--by", choices=("lineno", "traceback", "filename"), default="lineno")
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--frames", type=int, default=6, help="frames shown per traceback")
    args = p.parse_args(argv)
    report(args.before, args.after, args.connections, args.by, args.top, args.frames)
    return 0


if __name__ == "__main__":
    sys.exit(main())
