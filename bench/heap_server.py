"""server.py under tracemalloc, for finding what each connection costs (bench/load_idle.py
--heap-profile).

Runs server.main() with tracemalloc tracing FRAMES frames per allocation; on SIGUSR1 it collects
garbage and dumps a snapshot to the next file of the directory in $HEAP_PROFILE_DIR (0.snap,
1.snap, ...). Tracing slows the server and inflates its memory, so the RSS a run under it reports
is not the server's; the snapshots' differences are what matter (bench/heap_diff.py).
"""

from __future__ import annotations

import gc
import itertools
import os
import signal
import sys
import tracemalloc
from pathlib import Path

FRAMES = 12
REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    out = Path(os.environ["HEAP_PROFILE_DIR"])
    out.mkdir(parents=True, exist_ok=True)
    numbers = itertools.count()
    tracemalloc.start(FRAMES)

    def dump(signum: int, frame: object) -> None:
        gc.collect()
        path = out / f"{next(numbers)}.snap"
        tracemalloc.take_snapshot().dump(str(path.with_suffix(".tmp")))
        path.with_suffix(".tmp").rename(path)

    signal.signal(signal.SIGUSR1, dump)
    sys.path.insert(0, str(REPO))
    import server

    return server.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
