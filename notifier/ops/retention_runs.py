"""What the retention job did: its last run (rows removed, duration, error) and the rows it
removed in the last day, for /ops/, `notifier status` and /metrics."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from notifier.models import DeliverySummary, RetentionRun


@dataclass(frozen=True)
class RetentionSummary:
    last: RetentionRun | None  # the latest run (perhaps still running: finished_at None)
    removed_last_day: int
    summary_rows: int  # rows in delivery_summaries: what the removed deliveries became

    @property
    def last_seconds(self) -> float | None:
        if self.last is None or self.last.finished_at is None:
            return None
        return (self.last.finished_at - self.last.started_at).total_seconds()

    @property
    def failed(self) -> bool:
        return self.last is not None and self.last.error is not None

    def line(self) -> str:
        """One sentence for /ops/ and `notifier status`."""
        last = self.last
        if last is None:
            return "Retention: no run yet (beat runs it every RETENTION_SECONDS)."
        when = last.started_at.strftime("%Y-%m-%d %H:%M UTC")
        if last.error is not None:
            return (f"Retention: the run at {when} FAILED after removing {last.removed:,} "
                    f"deliveries: {last.error}")  # fmt: skip
        if last.finished_at is None:
            return f"Retention: running since {when}, {last.removed:,} deliveries removed so far."
        more = "" if last.complete else "; time ran out, the next run goes on"
        return (f"Retention: last run at {when} removed {last.removed:,} deliveries planned "
                f"before {last.cutoff:%Y-%m-%d %H:%M} in {self.last_seconds:.1f} s{more}; "
                f"{self.removed_last_day:,} removed in the last day.")  # fmt: skip


def retention_summary(session: Session, now: datetime) -> RetentionSummary:
    last = session.scalar(select(RetentionRun).order_by(RetentionRun.id.desc()).limit(1))
    removed = session.scalar(
        select(func.coalesce(func.sum(RetentionRun.removed), 0)).where(
            RetentionRun.started_at >= now - timedelta(days=1)
        )
    )
    rows = session.scalar(select(func.count()).select_from(DeliverySummary))
    return RetentionSummary(last, int(removed or 0), int(rows or 0))


def forget_retention_runs(session: Session, before: datetime) -> None:
    session.execute(delete(RetentionRun).where(RetentionRun.started_at < before))
