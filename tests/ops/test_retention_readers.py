"""Every reader of delivery counts shows the same figures before and after retention removed
the rows: history and alert pages (alert progress), the ops dashboard and `notifier status`
(outcomes since, the hourly chart), deliverability rates (per day, since, per alert, per
notice) and the /metrics figures built on them. Both databases."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import func, select

from notifier.domain.alerts import alert_progress
from notifier.models import (
    Alert,
    AlertStatus,
    Delivery,
    DeliveryOutcome,
    DeliveryStatus,
    DeliverySummary,
    PushSubscription,
    Subscriber,
    SubscriberStatus,
)
from notifier.ops.deliverability import (
    Thresholds,
    alert_rates,
    daily_rates,
    notice_rates,
    rates_since,
)
from notifier.ops.delivery_chart import hourly_outcomes
from notifier.ops.failures import deliveries_by_outcome
from notifier.ops.skips import skips_by_reason
from notifier.retention import run_retention
from notifier.timeutil import utcnow
from tests import factories

_numbers = itertools.count(1)
LIMITS = Thresholds(bounce_percent=2.0, complaint_percent=0.1, min_sent=1)
S, F, K = DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.SKIPPED
Out = DeliveryOutcome
# (status, outcome) of the rows each notice gets per channel beside the email factory's.
ENDS = [(S, Out.SENT), (S, Out.SENT), (F, Out.FAILED), (F, Out.GONE), (K, Out.SKIPPED)]


@dataclass(frozen=True)
class History:
    at: datetime  # when it all went out
    article_id: int
    alert_id: int


def _rows(session, at: datetime, notice: dict, channel: str) -> None:
    """One row per ENDS entry for new recipients of `channel`."""
    for status, outcome in ENDS:
        if channel == "push":
            endpoint = f"https://fcm.googleapis.com/fcm/send/{next(_numbers)}"
            recipient = PushSubscription(endpoint=endpoint, p256dh="k", auth="a")
        else:
            email = f"reader-{next(_numbers)}@example.com"
            recipient = Subscriber(email=email, status=SubscriberStatus.ACTIVE)
        session.add(recipient)
        session.flush()
        column = "push_subscription_id" if channel == "push" else "subscriber_id"
        session.add(Delivery(
            **notice, **{column: recipient.id}, channel=channel, status=status, outcome=outcome,
            attempts=1, created_at=at, next_attempt_at=at, sent_at=at if status is S else None,
            last_error="reader left" if status is K else None,
        ))  # fmt: skip


def history(session, at: datetime) -> History:
    """An article and an alert that went out at `at` by email and push, with every outcome:
    sent, failed, gone, skipped, bounced and complained."""
    story = factories.article(session, "news")
    story.fanned_out_at = at
    factories.email_deliveries(session, at, sent=6, bounced=1, complained=1, gone=1, story=story)
    alert = Alert(title="Breaking", url="https://aze.media/", target_all=True,
                  status=AlertStatus.SENT, created_at=at, started_at=at, fanned_out_at=at,
                  finished_at=at)  # fmt: skip
    session.add(alert)
    session.flush()
    factories.email_deliveries(session, at, sent=5, complained=1, gone=1, alert_id=alert.id)
    for notice in ({"article_id": story.id}, {"alert_id": alert.id}):
        _rows(session, at, notice, "push")
        _rows(session, at, notice, "email")
    session.commit()
    return History(at, story.id, alert.id)


READERS = {
    "alert progress (history, alert page, API)": lambda s, h: alert_progress(s, h.alert_id),
    "outcomes since (ops dashboard, status)": lambda s, h: deliveries_by_outcome(
        s, h.at - timedelta(days=1)
    ),
    "skips by reason (ops dashboard, metrics)": lambda s, h: skips_by_reason(
        s, h.at - timedelta(days=1)
    ),
    "hourly chart (ops dashboard)": lambda s, h: hourly_outcomes(s, h.at + timedelta(hours=2), 4),
    "email rates per day (ops, status, metrics)": lambda s, h: daily_rates(
        s, h.at + timedelta(hours=1), 3, ZoneInfo("Asia/Baku"), LIMITS
    ),
    "email rates since (metrics)": lambda s, h: rates_since(s, h.at - timedelta(days=1)),
    "email rates of an alert (alert page)": lambda s, h: alert_rates(s, h.alert_id, LIMITS),
    "email rates per notice (ops, status)": lambda s, h: notice_rates(
        s, h.at - timedelta(days=1), LIMITS
    ),
}


@pytest.mark.parametrize("reader", list(READERS))
def test_the_same_figures_after_retention_removed_the_rows(session, settings, reader):
    read = READERS[reader]
    past = history(session, utcnow() - timedelta(minutes=10))
    before = read(session, past)
    rows_before = session.scalar(select(func.count()).select_from(Delivery))
    session.rollback()  # end the read transaction: retention runs in its own session

    with time_machine.travel(past.at + timedelta(days=settings.delivery_retention_days, hours=1)):
        run = run_retention(settings)

    rows_after = session.scalar(select(func.count()).select_from(Delivery))
    # Only the bounce evidence is kept (5 emails gone or bounced); everything else went.
    assert (rows_before, rows_after, run.removed) == (33, 5, 28)
    assert session.scalar(select(func.sum(DeliverySummary.count))) == 28
    assert read(session, past) == before
