"""Send a batch of deliveries: claim, compose, send through one session per channel, record.

Each outcome is committed right after its send, so a worker that dies can have sent at
most one message that is not yet marked sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from notifier.channels.base import Channel, Outcome
from notifier.config import Settings
from notifier.domain.deliveries import RetryPolicy, apply_outcome, claim_deliveries, skip_delivery
from notifier.models import Delivery
from notifier.timeutil import utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outlet:
    """A channel bound to deliveries: how to compose its message and what 'gone' means."""

    channel: Channel
    compose: Callable[[Session, Delivery], object]  # a message, or a str: why not to send
    recipient_gone: Callable[[Session, Delivery, str, datetime], None]


@dataclass
class BatchReport:
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    retry_in: dict[int, float] = field(default_factory=dict)  # delivery id -> seconds


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(
        settings.delivery_max_attempts,
        settings.delivery_retry_base_seconds,
        settings.delivery_retry_max_seconds,
        timedelta(seconds=settings.delivery_max_age_seconds),
    )


def send_deliveries(
    session: Session,
    delivery_ids: Sequence[int],
    outlets: Mapping[str, Outlet],
    settings: Settings,
    now: Callable[[], datetime] = utcnow,
) -> BatchReport:
    report = BatchReport()
    claimed = claim_deliveries(session, delivery_ids, now(), settings.delivery_lease_seconds)
    session.commit()
    rows = session.execute(select(Delivery.channel, Delivery.id).where(Delivery.id.in_(claimed)))
    by_channel: dict[str, list[int]] = {}
    for channel, delivery_id in rows:
        by_channel.setdefault(channel, []).append(delivery_id)
    for channel, ids in by_channel.items():
        _send_through(session, sorted(ids), outlets[channel], retry_policy(settings), now, report)
    return report


def _send_through(
    session: Session,
    ids: list[int],
    outlet: Outlet,
    policy: RetryPolicy,
    now: Callable[[], datetime],
    report: BatchReport,
) -> None:
    connection = outlet.channel.open()
    try:
        for delivery_id in ids:
            delivery = session.get(Delivery, delivery_id)
            message = outlet.compose(session, delivery)
            if isinstance(message, str):
                skip_delivery(delivery, message)
                session.commit()
                report.skipped += 1
                continue
            result = connection.send(message)
            delay = apply_outcome(session, delivery, result, now(), policy)
            if result.outcome is Outcome.GONE:
                outlet.recipient_gone(session, delivery, result.detail, now())
            session.commit()
            if result.outcome is Outcome.SENT:
                report.sent += 1
            elif delay is None:
                report.failed += 1
                log.warning("delivery %s failed: %s", delivery_id, delivery.last_error)
            else:
                report.retry_in[delivery_id] = delay
    finally:
        connection.close()
