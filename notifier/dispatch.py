"""Send a batch of deliveries: claim, render, send through one channel session, record.

Each outcome is committed right after its send, so a worker that dies can have sent at
most one message that is not yet marked sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from notifier.channels.base import Channel, Outcome
from notifier.compose import Composer
from notifier.config import Settings
from notifier.domain.deliveries import RetryPolicy, apply_outcome, claim_deliveries, skip_delivery
from notifier.models import Delivery
from notifier.timeutil import utcnow

log = logging.getLogger(__name__)


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
    )


def send_email_deliveries(
    session: Session,
    delivery_ids: Sequence[int],
    channel: Channel,
    composer: Composer,
    settings: Settings,
    now: Callable = utcnow,
) -> BatchReport:
    report = BatchReport()
    claimed = claim_deliveries(session, delivery_ids, now(), settings.delivery_lease_seconds)
    session.commit()
    if not claimed:
        return report
    policy = retry_policy(settings)
    connection = channel.open()
    try:
        for delivery_id in claimed:
            delivery = session.get(Delivery, delivery_id)
            message = composer.article_email(session, delivery)
            if isinstance(message, str):
                skip_delivery(delivery, message)
                session.commit()
                report.skipped += 1
                continue
            result = connection.send(message.to_mime(settings.mail_from))
            delay = apply_outcome(session, delivery, result, now(), policy)
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
    return report
