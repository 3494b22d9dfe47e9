"""Worker heartbeats: each worker writes one row every few seconds, so any process (the
dashboard, `notifier status`, /metrics) knows who is alive without asking the broker."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

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
        "machine": this_machine(),
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


def this_machine() -> str:
    """This machine, across processes and containers sharing its kernel: its host name and
    the kernel's boot id (a host name alone can repeat between hosts or containers)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = "no-boot-id"
    return f"{socket.gethostname()}/{boot}"[:300]


def name_in_use(
    database_url: str,
    hostname: str,
    stale_seconds: float,
    heartbeat_seconds: float,
    sleep: Callable[[float], None] = time.sleep,
) -> str | None:
    """Why a worker starting under `hostname` must not, or None. Another worker is alive under
    that name when its heartbeat is fresh and it is a live process of this machine, or, from
    another machine, it writes its heartbeat again while we wait one heartbeat period (a
    restarted worker's last row stays fresh for a while, but nobody writes it any more)."""

    def row() -> WorkerHeartbeat | None:
        with session_scope(database_url) as session:
            found = session.get(WorkerHeartbeat, hostname)
            if found is not None:
                session.expunge(found)
            return found

    now = utcnow()
    seen = row()
    if seen is None or seen.seen_at < now - timedelta(seconds=stale_seconds):
        return None
    if seen.pid == os.getpid() and seen.machine == this_machine():
        return None
    if seen.machine == this_machine():
        if not _alive(seen.pid):
            return None  # this worker, restarted: its old process is gone
        where = f"on this machine as process {seen.pid}"
    else:
        sleep(heartbeat_seconds + 1.0)
        again = row()
        if again is None or again.seen_at <= seen.seen_at:
            return None  # nobody wrote it since: a worker that stopped or died
        where = f"on {again.machine or 'another machine'} as process {again.pid}"
    return (
        f"another worker named {hostname} is running {where}: two workers with one name take "
        "each other's messages over while they are being sent (readers get them twice). "
        "Give each worker its own name (notifier worker -n NAME@%h, with distinct host names)."
    )


def _alive(pid: int) -> bool:
    """A live worker process of this machine (a restarted container can give its old pid to
    another program: only a process running a worker counts)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    return b"worker" in command and (b"notifier" in command or b"celery" in command)
