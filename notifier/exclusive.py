"""One holder at a time, across processes and hosts, for work that two runs at once would
trip over: two polls of the bounce mailbox both process the same reports, and the second's
insert fails on the first's (a failure recorded for nothing).

A PostgreSQL session advisory lock on a connection of its own, tried and never waited for:
the run that does not get it has nothing to do, since the holder is doing it. A holder that
dies loses its connection, and the lock with it. SQLite (one development machine, one beat)
has no such locks: there the block always runs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text

from notifier.db import engine_for


def lock_key(name: str) -> int:
    """A stable 64-bit key for `name` (advisory locks are numbered)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


@contextmanager
def alone(database_url: str, name: str) -> Iterator[bool]:
    """Whether this run holds `name`; held until the block ends."""
    engine = engine_for(database_url)
    if engine.dialect.name != "postgresql":
        yield True
        return
    key = lock_key(name)
    with engine.connect() as connection:
        held = bool(connection.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}))
        connection.commit()  # the lock is the session's: no transaction stays open meanwhile
        try:
            yield held
        finally:
            if held:
                try:
                    connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                    connection.commit()
                except Exception:
                    # Never back to the pool still holding it: closing the connection frees it.
                    connection.invalidate()
                    raise
