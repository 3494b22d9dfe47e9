"""Worker heartbeats: each worker writes one row every few seconds, so any process (the
dashboard, `notifier status`, /metrics) knows who is alive without asking the broker."""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from notifier.db import session_scope
from notifier.models import WorkerHeartbeat
from notifier.sql import insert_ignoring_conflicts
from notifier.timeutil import utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerState:
    hostname: str
    online: bool
    seen_at: datetime
    started_at: datetime
    concurrency: int
    active_tasks: int
    pid: int


def record_heartbeat(
    database_url: str, hostname: str, concurrency: int, active_tasks: int, started_at: datetime
) -> None:
    """Upsert this worker's row. A database outage must not take the worker down."""
    now = utcnow()
    values = {
        "hostname": hostname, "seen_at": now, "started_at": started_at,
        "concurrency": concurrency, "active_tasks": active_tasks, "pid": os.getpid(),
    }  # fmt: skip
    try:
        with session_scope(database_url) as session:
            inserted = session.execute(
                insert_ignoring_conflicts(session, WorkerHeartbeat.__table__).returning(
                    WorkerHeartbeat.hostname
                ),
                values,
            ).scalar()
            if inserted is None:
                row = session.get(WorkerHeartbeat, hostname)
                for key, value in values.items():
                    setattr(row, key, value)
            session.commit()
    except SQLAlchemyError as error:
        log.warning("heartbeat not recorded: %s", error)


def forget_heartbeat(database_url: str, hostname: str) -> None:
    """A worker that stopped cleanly is gone, not offline: it should not alarm anyone."""
    try:
        with session_scope(database_url) as session:
            session.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.hostname == hostname))
            session.commit()
    except SQLAlchemyError as error:
        log.warning("heartbeat row not removed: %s", error)


def worker_states(session: Session, now: datetime, stale_seconds: int) -> list[WorkerState]:
    """Workers seen in the last day; online if their last heartbeat is fresh."""
    rows = session.scalars(
        select(WorkerHeartbeat)
        .where(WorkerHeartbeat.seen_at >= now - timedelta(days=1))
        .order_by(WorkerHeartbeat.hostname)
    )
    fresh = now - timedelta(seconds=stale_seconds)
    return [
        WorkerState(
            r.hostname,
            r.seen_at >= fresh,
            r.seen_at,
            r.started_at,
            r.concurrency,
            r.active_tasks,
            r.pid,
        )
        for r in rows
    ]


def this_host() -> str:
    return socket.gethostname()
