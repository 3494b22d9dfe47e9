"""Send a batch of deliveries: claim, compose, send through one session per channel, record.

Each outcome is committed right after its send, so a worker that dies can have sent at
most one message that is not yet marked sent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

from notifier import metrics
from notifier.channels.base import Channel, Outcome, SendResult
from notifier.config import Settings
from notifier.domain.deliveries import (
    RetryPolicy,
    apply_outcome,
    claim_deliveries,
    renew_leases,
    skip_delivery,
)
from notifier.logs import redact
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
    claimed_at = now()
    claimed = claim_deliveries(session, delivery_ids, claimed_at, settings.delivery_lease_seconds)
    session.commit()
    lease = Lease(claimed, claimed_at, settings.delivery_lease_seconds)
    rows = session.execute(select(Delivery.channel, Delivery.id).where(Delivery.id.in_(claimed)))
    by_channel: dict[str, list[int]] = {}
    for channel, delivery_id in rows:
        by_channel.setdefault(channel, []).append(delivery_id)
    for channel, ids in by_channel.items():
        _send_through(session, sorted(ids), outlets[channel], retry_policy(settings), now,
                      report, lease)  # fmt: skip
    return report


class Lease:
    """The rows this batch holds, renewed before they run out: a batch slower than its lease
    keeps its rows, and a row another worker took after our lease lapsed is not sent twice."""

    def __init__(self, ids: Sequence[int], claimed_at: datetime, seconds: int) -> None:
        self.ids = set(ids)
        self.seconds = seconds
        self.until = claimed_at + timedelta(seconds=seconds)

    def holds(self, session: Session, delivery_id: int, now: datetime) -> bool:
        if now >= self.until - timedelta(seconds=self.seconds / 3):
            kept, self.until = renew_leases(session, sorted(self.ids), self.until, now,
                                            self.seconds)  # fmt: skip
            session.commit()
            self.ids = set(kept)
        return delivery_id in self.ids and now < self.until

    def release(self, delivery_id: int) -> None:
        self.ids.discard(delivery_id)


def _send_through(
    session: Session,
    ids: list[int],
    outlet: Outlet,
    policy: RetryPolicy,
    now: Callable[[], datetime],
    report: BatchReport,
    lease: Lease,
) -> None:
    connection = outlet.channel.open()
    try:
        for delivery_id in ids:
            if not lease.holds(session, delivery_id, now()):
                continue  # another worker holds it now
            delivery = session.get(Delivery, delivery_id)
            message = outlet.compose(session, delivery)
            if isinstance(message, str):
                skip_delivery(delivery, message)
                session.commit()
                lease.release(delivery_id)
                metrics.delivery_recorded(session, delivery)
                report.skipped += 1
                continue
            result = connection.send(message)
            delay, delivery = _record(session, delivery_id, result, outlet, policy, now, lease)
            lease.release(delivery_id)
            metrics.delivery_recorded(session, delivery)
            if result.outcome is Outcome.SENT:
                report.sent += 1
            elif delay is None:
                report.failed += 1
                log.warning(
                    "delivery %s failed: %s",
                    delivery_id,
                    redact(delivery.last_error or ""),
                    extra=log_context(delivery),
                )
            else:
                report.retry_in[delivery_id] = delay
    finally:
        connection.close()


def _record(
    session: Session,
    delivery_id: int,
    result: SendResult,
    outlet: Outlet,
    policy: RetryPolicy,
    now: Callable[[], datetime],
    lease: Lease,
) -> tuple[float | None, Delivery]:
    """Write the outcome of a send that happened. The message is out, so a database blip
    must not lose that fact (the row would be sent again after its lease): keep trying
    while the lease holds, then give up loudly."""
    pause = 0.2
    while True:
        try:
            delivery = session.get(Delivery, delivery_id)
            delay = apply_outcome(session, delivery, result, now(), policy)
            if result.outcome is Outcome.GONE:
                outlet.recipient_gone(session, delivery, result.detail, now())
            session.commit()
            return delay, delivery
        except (OperationalError, InterfaceError) as error:
            session.rollback()
            if now() + timedelta(seconds=pause) >= lease.until:
                raise
            log.warning("database unavailable while recording delivery %s (%s); retrying",
                        delivery_id, type(error).__name__)  # fmt: skip
            time.sleep(pause)
            pause = min(pause * 2, 5.0)


def log_context(delivery: Delivery) -> dict[str, object]:
    """Ids for a log record about a delivery (never its address or endpoint)."""
    return {
        "delivery_id": delivery.id,
        "channel": delivery.channel,
        "article_id": delivery.article_id,
        "alert_id": delivery.alert_id,
        "subscriber_id": delivery.subscriber_id,
        "push_subscription_id": delivery.push_subscription_id,
    }
