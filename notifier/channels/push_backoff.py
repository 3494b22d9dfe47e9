"""Retry-After per push service, shared by every worker process through the database.

A 429 from FCM seen by one batch must hold back every other batch and process that would
post to FCM, not only the rest of that batch; reading the small table a few times a second
is enough for that and costs nothing next to the pushes it saves.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from sqlalchemy import bindparam, select
from sqlalchemy.exc import SQLAlchemyError

from notifier.db import engine_for, session_scope
from notifier.models import PushServiceBackoff
from notifier.sql import insert_ignoring_conflicts
from notifier.timeutil import utcnow

MAX_BLOCK_SECONDS = 86400.0  # channels clamp Retry-After first; this keeps datetimes sane

_TABLE = PushServiceBackoff.__table__
# Read a few times a second by every sending process: on a pooled connection, without an ORM
# session (1.3 ms of CPU a read that way, 0.6 ms this way).
_IN_FORCE = select(_TABLE.c.origin, _TABLE.c.blocked_until).where(
    _TABLE.c.blocked_until > bindparam("now")
)


class SharedBackoff:
    def __init__(self, database_url: str, refresh_seconds: float = 0.25) -> None:
        self.database_url = database_url
        self.refresh_seconds = refresh_seconds
        self._until: dict[str, float] = {}  # origin -> wall-clock seconds
        self._loaded_at = float("-inf")  # never read yet
        self._lock = threading.Lock()

    def wait_seconds(self, origin: str) -> float:
        """How long this push service asked everyone to wait from now (0: go ahead)."""
        self.refresh()
        return self.known_wait_seconds(origin)

    def refresh(self) -> None:
        """Read what other processes were told, if the last read is older than
        `refresh_seconds`. Blocking I/O, outside the lock: the event loop asks
        `known_wait_seconds` meanwhile and must never wait for the database."""
        if time.monotonic() - self._loaded_at < self.refresh_seconds:
            return
        try:
            with engine_for(self.database_url).connect() as connection:
                rows = connection.execute(_IN_FORCE, {"now": utcnow()}).all()
        except SQLAlchemyError:
            # Keep what we know, and ask again after refresh_seconds, not before every push:
            # each try waits for a connection, and the outage is the task's to handle.
            self._loaded_at = time.monotonic()
            return
        with self._lock:
            for origin, until in rows:
                self._until[origin] = max(self._until.get(origin, 0.0), until.timestamp())
            self._loaded_at = time.monotonic()

    def known_wait_seconds(self, origin: str) -> float:
        """The wait as last read, without I/O: safe to ask before every request, from the
        event loop, so a batch already under way stops when another process hears 429."""
        with self._lock:
            return max(0.0, self._until.get(origin, 0.0) - time.time())

    def block(self, origin: str, seconds: float, reason: str) -> None:
        until = utcnow() + timedelta(seconds=min(max(seconds, 0.0), MAX_BLOCK_SECONDS))
        with self._lock:
            self._until[origin] = max(self._until.get(origin, 0.0), until.timestamp())
        try:
            with session_scope(self.database_url) as session:
                row = session.get(PushServiceBackoff, origin)
                if row is None:
                    session.execute(
                        insert_ignoring_conflicts(session, PushServiceBackoff.__table__),
                        {"origin": origin, "blocked_until": until, "reason": reason[:500]},
                    )
                elif row.blocked_until < until:
                    row.blocked_until, row.reason = until, reason[:500]
                session.commit()
        except SQLAlchemyError:
            pass  # still honoured in this process; the next 429 tells the others


class LocalBackoff:
    """The same, for one process only (tests, and channels built without a database)."""

    refresh_seconds = 1.0  # nothing to refresh; how often a waiting batch looks up anyway

    def __init__(self) -> None:
        self._until: dict[str, float] = {}

    def wait_seconds(self, origin: str) -> float:
        return max(0.0, self._until.get(origin, 0.0) - time.time())

    known_wait_seconds = wait_seconds

    def refresh(self) -> None:
        """Nothing to read: every block is already in this process."""

    def block(self, origin: str, seconds: float, reason: str) -> None:
        self._until[origin] = max(self._until.get(origin, 0.0), time.time() + seconds)
