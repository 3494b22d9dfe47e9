"""What the relays' webhook tests share: an email we sent (its delivery, with the Message-ID
the send path gives it) and what the database holds about bounces afterwards."""

from __future__ import annotations

from sqlalchemy import func, select

from notifier.models import (
    BounceReport,
    Delivery,
    DeliveryOutcome,
    DeliveryStatus,
    Suppression,
    TaskFailure,
)
from notifier.timeutil import utcnow
from tests import factories


def sent_email(session, reader) -> tuple[Delivery, str]:
    """An article emailed to the reader, as the send path leaves it, and its Message-ID."""
    story = factories.article(session, "news")
    delivery = Delivery(article_id=story.id, subscriber_id=reader.id, channel="email",
                        status=DeliveryStatus.SENT, outcome=DeliveryOutcome.SENT, attempts=1,
                        sent_at=utcnow())  # fmt: skip
    session.add(delivery)
    session.commit()
    # As notifier.delivery.compose writes it, in the MAIL_FROM domain of the test settings.
    return delivery, f"<article{story.id}.d{delivery.id}@aze.test>"


def count(session, model, *where) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


def nothing_changed(session, delivery, reader) -> bool:
    """No report kept, no suppression, the delivery and its reader as they were."""
    session.expire_all()
    session.refresh(delivery)
    session.refresh(reader)
    return (
        count(session, BounceReport) == 0
        and count(session, Suppression) == 0
        and delivery.outcome == DeliveryOutcome.SENT
        and reader.status.value == "active"
    )


def failures(session, relay: str) -> list[TaskFailure]:
    session.expire_all()
    name = f"notifier.bounces.webhook_{relay}"
    return list(session.scalars(select(TaskFailure).where(TaskFailure.task_name == name)))
