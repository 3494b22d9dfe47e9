"""Rows for tests, made through the same session the code under test uses."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from notifier.domain.alerts import create_alert, validate_alert
from notifier.domain.push_subscriptions import BrowserSubscription, save_push_subscription
from notifier.models import (
    Alert,
    Article,
    Category,
    Feed,
    PushSubscription,
    Subscriber,
    SubscriberStatus,
)

_numbers = itertools.count(1)


def categories(session: Session, *slugs: str) -> list[Category]:
    return list(session.scalars(select(Category).where(Category.slug.in_(slugs))))


def subscriber(
    session: Session,
    email: str,
    *slugs: str,
    status: SubscriberStatus = SubscriberStatus.ACTIVE,
) -> Subscriber:
    now = datetime.now(UTC)
    row = Subscriber(
        email=email,
        status=status,
        confirmed_at=now if status is not SubscriberStatus.PENDING else None,
        categories=categories(session, *slugs),
    )
    session.add(row)
    session.flush()
    return row


def article(
    session: Session, *slugs: str, title: str = "A story", announce: bool = True
) -> Article:
    number = next(_numbers)
    feed = session.scalar(select(Feed)) or Feed(url="https://aze.media/feed/")
    row = Article(
        feed=feed,
        guid=f"https://aze.media/?p={number}",
        link=f"https://aze.media/story-{number}/",
        title=title,
        summary="What happened, in two lines.",
        published_at=datetime.now(UTC),
        announce=announce,
        categories=categories(session, *slugs),
    )
    session.add(row)
    session.flush()
    return row


def alert(
    session: Session,
    site_url: str,
    *slugs: str,
    channels: tuple[str, ...] = ("email",),
    title: str = "Ceasefire",
    at: datetime | None = None,
    created_at: datetime | None = None,
) -> Alert:
    """An editor's breaking alert to these categories, validated and created as the editor
    pages do (`at`: when it was written, default now; `created_at`: default `at`); not
    committed."""
    at = at or datetime.now(UTC)
    data = {"title": title, "channels": list(channels), "categories": list(slugs)}
    row, _ = create_alert(session, validate_alert(session, data, site_url, at), created_at or at)
    return row


def push_subscription(session: Session, browser, *slugs: str) -> PushSubscription:
    """Save a browser's subscription (a tests.support.push_service.BrowserSubscription)."""
    row, _ = save_push_subscription(
        session,
        BrowserSubscription(browser.endpoint, browser.p256dh, browser.auth),
        list(slugs),
        datetime.now(UTC),
    )
    session.commit()
    return row


def email_deliveries(
    session: Session,
    at: datetime,
    *,
    sent: int = 0,
    bounced: int = 0,
    complained: int = 0,
    gone: int = 0,
    story: Article | None = None,
    alert_id: int | None = None,
) -> Article | None:
    """Email that went out at `at` to new readers, one row each, as the send path and the
    bounce processor leave them: `sent` taken by the server (of which `bounced` came back and
    `complained` were reported as spam), plus `gone` refused at once (5xx for the address)."""
    from notifier.models import Delivery, DeliveryOutcome, DeliveryStatus

    if story is None and alert_id is None:
        story = article(session, "news")
    ends = [DeliveryOutcome.BOUNCED] * bounced + [DeliveryOutcome.COMPLAINED] * complained
    ends += [DeliveryOutcome.SENT] * (sent - len(ends))
    ends += [DeliveryOutcome.GONE] * gone
    readers = [
        Subscriber(email=f"reader{next(_numbers)}@example.com", status=SubscriberStatus.ACTIVE)
        for _ in ends
    ]
    session.add_all(readers)
    session.flush()
    for reader, end in zip(readers, ends, strict=True):
        went = end is not DeliveryOutcome.GONE
        session.add(Delivery(
            article_id=story.id if story else None, alert_id=alert_id,
            subscriber_id=reader.id, channel="email", attempts=1, outcome=end,
            status=DeliveryStatus.SENT if went else DeliveryStatus.FAILED,
            created_at=at, next_attempt_at=at, sent_at=at if went else None,
        ))  # fmt: skip
    session.flush()
    return story
