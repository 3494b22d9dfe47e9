"""Recent failed deliveries grouped by cause, and retrying them once the cause is fixed."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import String, func, literal, select, update
from sqlalchemy.orm import Session

from notifier.models import Delivery, DeliveryStatus, DeliverySummary

# Errors quote what servers answered, so these run in linear time (runs taken whole,
# a bounded search for the endpoint path).
_NOISE = [
    (re.compile(r"(?<![^\s@])[^\s@]++@\S++"), "<address>"),
    (re.compile(r"https?://\S{1,300}?/(push|fcm/send|wpush|v\d)/\S*+"), "<endpoint>"),
    (re.compile(r"\b\d{5,}+\b"), "<n>"),
]


def cause_of(last_error: str | None) -> str:
    """'gone: SMTP 550 5.1.1 <x@y> No such user' -> 'gone: SMTP 550 5.1.1 <address> No such
    user', cut short: errors that differ only by address, endpoint or id group together."""
    text = (last_error or "unknown")[:2000]
    for pattern, replacement in _NOISE:
        text = pattern.sub(replacement, text)
    return text[:120]


@dataclass(frozen=True)
class FailureGroup:
    channel: str
    cause: str
    count: int
    last_at: datetime
    delivery_ids: tuple[int, ...]


def recent_failures(session: Session, now: datetime, hours: int = 24) -> list[FailureGroup]:
    rows = session.execute(
        select(Delivery.id, Delivery.channel, Delivery.last_error, Delivery.created_at)
        .where(
            Delivery.status == DeliveryStatus.FAILED,
            Delivery.created_at >= now - timedelta(hours=hours),
        )
        .order_by(Delivery.id.desc())
        .limit(10_000)
    )
    groups: dict[tuple[str, str], list] = {}
    for delivery_id, channel, last_error, created_at in rows:
        groups.setdefault((channel, cause_of(last_error)), []).append((delivery_id, created_at))
    result = [
        FailureGroup(
            channel, cause, len(items), max(at for _, at in items), tuple(i for i, _ in items)
        )
        for (channel, cause), items in groups.items()
    ]
    return sorted(result, key=lambda g: g.count, reverse=True)


def retry_failed(session: Session, delivery_ids: list[int], now: datetime) -> list[int]:
    """Give failed deliveries a fresh set of attempts. The send-time check still skips
    recipients that left or are gone, and each is sent at most once."""
    if not delivery_ids:
        return []
    return sorted(
        session.scalars(
            update(Delivery)
            .where(Delivery.id.in_(delivery_ids), Delivery.status == DeliveryStatus.FAILED)
            .values(
                status=DeliveryStatus.PENDING,
                outcome=None,
                attempts=0,
                next_attempt_at=now,
                lease_until=None,
                created_at=now,
                last_error=literal("retry requested after: ", String) + Delivery.last_error,
            )
            .returning(Delivery.id)
        )
    )


def deliveries_by_outcome(session: Session, since: datetime) -> dict[tuple[str, str], int]:
    """(channel, sent|failed|gone|skipped|queued) -> count, for deliveries made since: the
    ledger's rows plus those retention removed (counted by the hour they were planned in)."""
    rows = session.execute(
        select(Delivery.channel, Delivery.status, Delivery.outcome, func.count())
        .where(Delivery.created_at >= since)
        .group_by(Delivery.channel, Delivery.status, Delivery.outcome)
    ).all()
    removed = session.execute(
        select(DeliverySummary.channel, DeliverySummary.outcome, func.sum(DeliverySummary.count))
        .where(DeliverySummary.created_hour >= since)
        .group_by(DeliverySummary.channel, DeliverySummary.outcome)
    ).all()
    counts: dict[tuple[str, str], int] = {}
    for channel, status, outcome, count in rows:
        if status in (DeliveryStatus.PENDING, DeliveryStatus.SENDING):
            name = "queued"
        else:
            name = outcome.value if outcome is not None else status.value
        counts[(channel, name)] = counts.get((channel, name), 0) + count
    for channel, name, count in removed:  # only final rows are removed: the outcome names it
        counts[(channel, name)] = counts.get((channel, name), 0) + int(count)
    return counts
