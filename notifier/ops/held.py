"""Pushes waiting for their browsers' quiet hours to end: not lost, not late, just held
(notifier.delivery.holding). Operators see how many and when the next one is due."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from notifier.models import Delivery, DeliveryStatus


@dataclass(frozen=True)
class HeldSummary:
    count: int
    next_due: datetime | None  # the earliest a held push goes


def held_for_quiet_hours(session: Session, now: datetime) -> HeldSummary:
    """Pending rows held by quiet hours whose time has not come (read through the index of
    due rows: pending, by next_attempt_at)."""
    rows = Delivery.__table__.c
    count, next_due = session.execute(
        select(func.count(), func.min(rows.next_attempt_at)).where(
            rows.status == DeliveryStatus.PENDING,
            rows.next_attempt_at > now,
            rows.held_until.is_not(None),
        )
    ).one()
    return HeldSummary(count or 0, next_due)
