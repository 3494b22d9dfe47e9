"""Deliveries skipped on purpose, by reason: the reader left or paused, the alert was stopped,
the article was stale by the time it could go (notifier.delivery.stale_news), ..."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from notifier.models import Delivery, DeliveryStatus, DeliverySummary
from notifier.ops.failures import cause_of

# Reasons with a series of their own in /metrics (a fixed set: a label per reader's pause
# date would not be); every other reason counts as "other" there and shows whole on /ops/.
NAMED_SKIP_REASONS = (
    "stale",
    "quiet hours: stale by their end",  # notifier.delivery.push_gate
    "quiet hours: stale when released",
    "daily cap",  # notifier.delivery.push_cap
)


@dataclass(frozen=True)
class SkipGroup:
    channel: str
    reason: str
    count: int


def skips_by_reason(session: Session, since: datetime) -> list[SkipGroup]:
    """Skipped deliveries planned since `since`, by channel and reason, most first: the
    ledger's rows plus those retention removed (counted by the hour they were planned in)."""
    rows = session.execute(
        select(Delivery.channel, Delivery.last_error, func.count())
        .where(Delivery.status == DeliveryStatus.SKIPPED, Delivery.created_at >= since)
        .group_by(Delivery.channel, Delivery.last_error)
    ).all()
    removed = session.execute(
        select(DeliverySummary.channel, DeliverySummary.reason, func.sum(DeliverySummary.count))
        .where(
            DeliverySummary.status == DeliveryStatus.SKIPPED.value,
            DeliverySummary.created_hour >= since,
        )
        .group_by(DeliverySummary.channel, DeliverySummary.reason)
    ).all()
    counts: dict[tuple[str, str], int] = {}
    for channel, reason, count in [*rows, *removed]:
        key = (channel, cause_of(reason))
        counts[key] = counts.get(key, 0) + int(count)
    groups = [SkipGroup(channel, reason, n) for (channel, reason), n in counts.items()]
    return sorted(groups, key=lambda g: (-g.count, g.channel, g.reason))


def named_skip_counts(session: Session, since: datetime, channels) -> dict[tuple[str, str], int]:
    """(channel, reason) -> count for every channel and NAMED_SKIP_REASONS + "other", zeros
    included, so each series exists from the start."""
    counts = {(c, r): 0 for c in channels for r in (*NAMED_SKIP_REASONS, "other")}
    for group in skips_by_reason(session, since):
        reason = group.reason if group.reason in NAMED_SKIP_REASONS else "other"
        key = (group.channel, reason)
        counts[key] = counts.get(key, 0) + group.count
    return counts
