"""A worker process's garbage collector: collections that stay cheap while it sends.

Sending allocates many short-lived objects (rows, messages, results), few of them in cycles.
With CPython's defaults a collection of the young objects runs every 700 allocations and a
full one, walking everything the process imported (SQLAlchemy, Celery, Jinja, the templates),
every few seconds: 2-13 µs of CPU per message sent (bench/send_path.py, figures in the
README, "Fan-out at news scale"). After warming up, what the process loaded is frozen (never
walked again: it lives as long as the process) and the young generation is collected every
YOUNG_COLLECTION_ALLOCATIONS allocations instead, which leaves under 1 µs.
"""

from __future__ import annotations

import gc

# Net allocations of container objects between two collections of the youngest generation
# (CPython's default is 700). Cycles among short-lived objects wait at most this many
# allocations longer to be freed: a few MB at most, against a worker's 120 MB.
YOUNG_COLLECTION_ALLOCATIONS = 20_000


def settle_after_warm_up() -> None:
    """What the process holds now is kept for its life: freeze it, and collect young
    objects less often. (Run from the warm-up thread, it may also freeze what a first task
    holds at that moment: once per process, at most one chunk's objects, which reference
    counting still frees unless they form cycles.)"""
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_ALLOCATIONS, middle, oldest)
