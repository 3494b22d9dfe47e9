"""What the sweeper had to re-queue. It is a safety net: in normal operation work comes back
by itself and every count here is zero, so a non-zero count says something was lost."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from notifier.models import SweepRun

KINDS = ("articles", "alerts", "deliveries")


def record_sweep(
    session: Session, now: datetime, articles: int, alerts: int, deliveries: int
) -> None:
    session.add(SweepRun(swept_at=now, articles=articles, alerts=alerts, deliveries=deliveries))


@dataclass(frozen=True)
class SweepSummary:
    last_at: datetime | None  # None: no sweep in the last day
    last: dict[str, int]  # what the last sweep re-queued, per kind
    last_day: dict[str, int]  # re-queued in the last day, per kind
    sweeps_last_day: int


def sweep_summary(session: Session, now: datetime) -> SweepSummary:
    since = now - timedelta(days=1)
    last = session.scalar(select(SweepRun).order_by(SweepRun.swept_at.desc()).limit(1))
    totals = session.execute(
        select(func.count(), *(func.coalesce(func.sum(getattr(SweepRun, k)), 0) for k in KINDS))
        .where(SweepRun.swept_at >= since)
    ).one()  # fmt: skip
    last_counts = {k: getattr(last, k) for k in KINDS} if last else dict.fromkeys(KINDS, 0)
    return SweepSummary(
        last_at=last.swept_at if last and last.swept_at >= since else None,
        last=last_counts,
        last_day={k: int(v) for k, v in zip(KINDS, totals[1:], strict=True)},
        sweeps_last_day=int(totals[0]),
    )


def forget_sweeps(session: Session, before: datetime) -> None:
    session.execute(delete(SweepRun).where(SweepRun.swept_at < before))
