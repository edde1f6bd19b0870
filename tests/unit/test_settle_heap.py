"""server.settle_heap: what start-up built is frozen out of the collector's reach, the youngest
generation's threshold raised; cycles made afterwards are still collected."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

import server


class _Node:
    """A cycle only the collector can free."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_gc")
def test_freezes_the_start_up_heap_and_raises_the_young_threshold() -> None:
    older = gc.get_threshold()[1:]
    frozen_before = gc.get_freeze_count()
    built_at_start_up = [_Node() for _ in range(10)]
    server.settle_heap()
    assert gc.get_freeze_count() >= frozen_before + len(built_at_start_up)
    assert gc.get_threshold() == (server.GC_YOUNG_THRESHOLD, *older)
    later = weakref.ref(_Node())
    gc.collect()
    assert later() is None  # a cycle made after start-up is still garbage collected
