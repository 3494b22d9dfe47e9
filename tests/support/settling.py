"""Waiting for a count that another thread or process moves to stop moving."""

from __future__ import annotations

import time
from collections.abc import Callable


def settled_count(count: Callable[[], int], quiet: float = 0.3, at_most: float = 5.0) -> int:
    """`count()` once it has not changed for `quiet` seconds (or after `at_most` seconds
    more): how far a server got while the caller paused."""
    last, settled = count(), time.monotonic() + quiet
    deadline = settled + at_most
    while time.monotonic() < deadline:
        now = count()
        if now != last:
            last, settled = now, time.monotonic() + quiet
        elif time.monotonic() >= settled:
            break
        time.sleep(0.01)
    return last
