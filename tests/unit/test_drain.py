"""server.drain_batches: the sessions a stop closes, cut into equal batches one DRAIN_STEP apart,
all within --shutdown-drain (sooner with fewer sessions than steps)."""

from __future__ import annotations

import pytest

from server import DRAIN_STEP, drain_batches


def ids(count: int) -> list[str]:
    return [f"s{n}" for n in range(count)]


@pytest.mark.parametrize(
    ("count", "drain", "sizes"),
    [
        (0, 3.0, []),
        (31, 3.0, [2] * 15 + [1]),  # 16 batches: done 1.5 s after the first
        (5, 3.0, [1] * 5),
        (10_000, 3.0, [334] * 29 + [314]),  # 30 batches: the whole drain
        (10_000, 0.0, [10_000]),  # no drain: all at once
        (7, 0.05, [7]),  # less than a step
    ],
)
def test_batches_cover_every_session_once_in_order(count: int, drain: float, sizes: list[int]):
    batches = drain_batches(ids(count), drain)
    assert [len(batch) for batch in batches] == sizes
    assert [sid for batch in batches for sid in batch] == ids(count)
    assert (len(batches) - 1) * DRAIN_STEP <= max(drain, 0)
