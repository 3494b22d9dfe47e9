"""Deliveries queued again after a fault, and why: a dead worker's claims taken over, the
broker having lost its queues, the broker not having taken them while it was away, or the
sweeper finding them lost. Each is a step in normal recovery, but none happens in normal
operation: every count here is zero then."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from notifier.models import Recovery, RecoveryCause, SweepRun

SWEEPER = "sweeper"  # rows the sweeper re-queued (sweep_runs), beside the recoveries' causes
CAUSES = (
    RecoveryCause.DEAD_WORKER.value,
    RecoveryCause.BROKER_LOST.value,
    RecoveryCause.BROKER_UNREACHABLE.value,
    SWEEPER,
)
WINDOW = timedelta(days=1)


def record_recovery(session: Session, now: datetime, cause: RecoveryCause, count: int) -> None:
    """Note `count` deliveries queued again for `cause` (caller commits); none, no row."""
    if count:
        session.add(Recovery(recovered_at=now, cause=cause, deliveries=count))


@dataclass(frozen=True)
class RecoverySummary:
    last_day: dict[str, int]  # deliveries queued again in the last day, per cause (CAUSES)
    last_at: datetime | None  # the latest of them; None: nothing in the last day

    @property
    def total(self) -> int:
        return sum(self.last_day.values())


def recovery_summary(session: Session, now: datetime) -> RecoverySummary:
    since = now - WINDOW
    counts = dict.fromkeys(CAUSES, 0)
    rows = session.execute(
        select(Recovery.cause, func.sum(Recovery.deliveries), func.max(Recovery.recovered_at))
        .where(Recovery.recovered_at >= since)
        .group_by(Recovery.cause)
    ).all()  # fmt: skip
    latest = [when for _, _, when in rows]
    for cause, count, _ in rows:
        counts[RecoveryCause(cause).value] = int(count)
    swept, swept_at = session.execute(
        select(func.coalesce(func.sum(SweepRun.deliveries), 0), func.max(SweepRun.swept_at))
        .where(SweepRun.swept_at >= since, SweepRun.deliveries > 0)
    ).one()  # fmt: skip
    counts[SWEEPER] = int(swept)
    if swept_at is not None:
        latest.append(swept_at)
    return RecoverySummary(last_day=counts, last_at=max(latest, default=None))


def forget_recoveries(session: Session, before: datetime) -> None:
    session.execute(delete(Recovery).where(Recovery.recovered_at < before))
