"""Per category, each reader takes email instantly, in a daily or weekly digest, or not at
all: an article is planned and sent at once only to its instant readers; push follows the
browser's own categories. Digest times fall at the reader's local hour. Both databases."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from notifier.domain.cadence import (
    email_cadences,
    next_digest_at,
    set_digest_time,
    set_email_cadences,
)
from notifier.domain.subscriptions import SubscriptionError
from notifier.models import (
    Cadence,
    Delivery,
    DeliveryOutcome,
    DigestSchedule,
    Subscriber,
    SubscriberStatus,
)
from notifier.timeutil import utcnow
from tests import factories
from tests.support.queue import article_fanned_out


def _reader(session, email: str, **cadences: str) -> Subscriber:
    reader = factories.subscriber(session, email, "news")
    set_email_cadences(session, reader.id, {k.replace("_", "-"): v for k, v in cadences.items()},
                       utcnow())  # fmt: skip
    session.commit()
    return reader


def _emailed(session, article_id: int) -> set[str]:
    rows = session.scalars(
        select(Subscriber.email)
        .join(Delivery, Delivery.subscriber_id == Subscriber.id)
        .where(Delivery.article_id == article_id, Delivery.channel == "email")
    )
    return set(rows)


def test_an_article_is_emailed_at_once_only_to_readers_who_take_one_of_its_categories_instantly(
    session, settings
):
    _reader(session, "instant@example.com", news="instant")
    _reader(session, "daily@example.com", news="daily")
    _reader(session, "weekly@example.com", news="weekly", culture="instant")
    _reader(session, "off@example.com", culture="instant")
    news = factories.article(session, "news")
    both = factories.article(session, "news", "culture")
    session.commit()
    article_fanned_out(session, settings, news.id)
    article_fanned_out(session, settings, both.id)
    assert _emailed(session, news.id) == {"instant@example.com"}
    assert _emailed(session, both.id) == {
        "instant@example.com", "weekly@example.com", "off@example.com",
    }  # fmt: skip


def test_push_follows_the_browsers_categories_whatever_the_email_cadence(
    session, settings, push_service
):
    _reader(session, "daily@example.com", news="daily")
    browser = push_service.new_subscription()
    factories.push_subscription(session, browser, "news")
    story = factories.article(session, "news")
    session.commit()
    article_fanned_out(session, settings, story.id)
    channels = set(session.scalars(select(Delivery.channel).where(Delivery.article_id == story.id)))
    assert channels == {"push"}


def test_a_reader_who_switched_to_a_digest_after_planning_is_skipped_with_the_reason(
    session, settings, smtp
):
    from notifier.delivery.compose import Composer
    from notifier.delivery.dispatch import send_deliveries
    from notifier.delivery.outlets import outlets

    reader = _reader(session, "r@example.com", news="instant")
    story = factories.article(session, "news")
    session.commit()
    _, ids = article_fanned_out(session, settings, story.id)
    set_email_cadences(session, reader.id, {"news": "daily"}, utcnow())
    session.commit()
    send_deliveries(session, ids, outlets(settings, Composer(settings)), settings)
    delivery = session.scalar(select(Delivery).where(Delivery.article_id == story.id))
    assert delivery.outcome is DeliveryOutcome.SKIPPED
    assert "no longer follows" in delivery.last_error
    assert smtp.handler.to("r@example.com") == []


def test_choices_are_kept_per_category_and_schedules_follow_the_digest_cadences(session):
    reader = _reader(session, "r@example.com", news="daily", culture="weekly", history="instant")
    slugs = {c.id: c.slug for c in reader.categories}
    assert {slugs[i]: c for i, c in email_cadences(session, reader.id).items()} == {
        "news": Cadence.DAILY, "culture": Cadence.WEEKLY, "history": Cadence.INSTANT,
    }  # fmt: skip
    schedules = session.scalars(select(DigestSchedule.cadence).where(
        DigestSchedule.subscriber_id == reader.id))  # fmt: skip
    assert sorted(schedules) == ["daily", "weekly"]
    set_email_cadences(session, reader.id, {"news": "instant", "culture": "off"}, utcnow())
    session.commit()
    assert session.scalars(select(DigestSchedule)).all() == []
    set_email_cadences(session, reader.id, {"news": "off"}, utcnow())
    session.commit()
    assert session.get(Subscriber, reader.id).status is SubscriberStatus.UNSUBSCRIBED


@pytest.mark.parametrize(
    ("choices", "message"),
    [
        ({"news": "hourly"}, "'hourly' is not a choice for news."),
        ({"nope": "daily"}, "There is no category 'nope'."),
    ],
)
def test_bad_choices_are_refused_with_a_sentence(session, choices, message):
    reader = _reader(session, "r@example.com", news="instant")
    with pytest.raises(SubscriptionError, match=message):
        set_email_cadences(session, reader.id, choices, utcnow())


def _utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


@pytest.mark.parametrize(
    ("zone", "after", "expected"),
    [
        # 07:00 in Baku (UTC+4) is 03:00 UTC; at 02:00 UTC it is still to come today.
        ("Asia/Baku", _utc(2026, 12, 7, 2), _utc(2026, 12, 7, 3)),
        ("Asia/Baku", _utc(2026, 12, 7, 3), _utc(2026, 12, 8, 3)),
        ("Europe/London", _utc(2026, 7, 1, 12), _utc(2026, 7, 2, 6)),  # summer time: UTC+1
        ("America/New_York", _utc(2026, 12, 7, 11), _utc(2026, 12, 7, 12)),
    ],
)
def test_the_next_daily_digest_is_at_the_readers_local_hour(session, zone, after, expected):
    reader = _reader(session, "r@example.com", news="daily")
    set_digest_time(session, reader.id, zone, "7", "0", after)
    assert next_digest_at(Cadence.DAILY, reader, after) == expected


def test_the_weekly_digest_falls_on_the_readers_weekday(session):
    reader = _reader(session, "r@example.com", news="weekly")
    monday = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)  # a Monday, after 07:00 London
    set_digest_time(session, reader.id, "Europe/London", "7", "0", monday)
    assert next_digest_at(Cadence.WEEKLY, reader, monday) == datetime(2026, 12, 14, 7, tzinfo=UTC)
    schedule = session.get(DigestSchedule, (reader.id, "weekly"))
    assert schedule.next_at == datetime(2026, 12, 14, 7, tzinfo=UTC)


@pytest.mark.parametrize(
    ("zone", "hour", "weekday", "message"),
    [
        ("Mars/Olympus", "7", "0", "not a time zone we know"),
        ("UTC", "24", "0", "between 0 and 23"),
        ("UTC", "seven", "0", "whole number"),
        ("UTC", "7", "7", "between 0 and 6"),
    ],
)
def test_a_bad_digest_time_is_refused_with_a_sentence(session, zone, hour, weekday, message):
    reader = _reader(session, "r@example.com", news="daily")
    with pytest.raises(SubscriptionError, match=message):
        set_digest_time(session, reader.id, zone, hour, weekday, utcnow())
