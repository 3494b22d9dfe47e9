"""A worker process after warming up: what it loaded is frozen, young objects collected
less often, and garbage cycles are still freed."""

from __future__ import annotations

import gc
import weakref

import pytest

from notifier.garbage import YOUNG_COLLECTION_ALLOCATIONS, settle_after_warm_up


@pytest.fixture
def restored_collector():
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_settling_freezes_what_is_loaded_and_still_frees_cycles(restored_collector):
    loaded = _Node()
    settle_after_warm_up()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold()[0] == YOUNG_COLLECTION_ALLOCATIONS
    assert not any(held is loaded for held in gc.get_objects())  # frozen: never walked

    cycle_a, cycle_b = _Node(), _Node()
    cycle_a.other, cycle_b.other = cycle_b, cycle_a
    gone = weakref.ref(cycle_a)
    del cycle_a, cycle_b
    kept = []
    for _ in range(YOUNG_COLLECTION_ALLOCATIONS * 2):  # allocations alone collect it
        kept.append([])
        if gone() is None:
            break
    assert gone() is None
    assert len(kept) > YOUNG_COLLECTION_ALLOCATIONS // 2  # not at the default 700
