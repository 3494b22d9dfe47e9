"""A reader who paused their email gets none until the pause ends, then the next article:
planning leaves them out, and the send-time check skips what was planned before the pause.
Real SMTP, both databases."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from notifier.delivery.compose import Composer
from notifier.delivery.dispatch import send_deliveries
from notifier.delivery.outlets import outlets
from notifier.delivery.planning import Notice, plan_chunks
from notifier.delivery.routes import AUDIENCES
from notifier.domain.alerts import audience_size, validate_alert
from notifier.domain.email_pause import PauseError, pause_email, paused_until, resume_email
from notifier.models import Delivery, DeliveryStatus, SubscriberStatus
from notifier.timeutil import utcnow
from tests import factories
from tests.support.queue import article_fanned_out

WEEK = 7  # EMAIL_PAUSE_DAYS' default


@pytest.fixture
def send(session, settings):
    bound = outlets(settings, Composer(settings))
    return lambda ids: send_deliveries(session, ids, bound, settings)


def _send_story(session, settings, send, title: str):
    """A new story fanned out as its task does, and what that queued sent."""
    story = factories.article(session, "news", title=title)
    session.commit()
    _, ids = article_fanned_out(session, settings, story.id)
    return send(ids) if ids else None


def _planned(session, story_id: int, now) -> int:
    chunks = plan_chunks(session, Notice.article(story_id), ["email"], now, 500)
    return sum(chunk.planned for chunk in chunks)


def _subjects_to(smtp, address: str) -> list[str]:
    return [message["Subject"] for message in smtp.handler.to(address)]


def test_a_paused_reader_gets_nothing_until_the_pause_ends_then_the_next_article(
    session, smtp, send, settings
):
    paused = factories.subscriber(session, "paused@example.com", "news")
    other = factories.subscriber(session, "other@example.com", "news")
    pause_email(session, paused.id, utcnow(), WEEK)
    session.commit()

    _send_story(session, settings, send, "During the pause")
    assert _subjects_to(smtp, "other@example.com") == ["During the pause"]
    assert _subjects_to(smtp, "paused@example.com") == []
    planned_for = set(session.scalars(select(Delivery.subscriber_id)))
    assert planned_for == {other.id}, "not even planned: nothing waits to go out later"

    # The same pause, had it started eight days ago, ended yesterday.
    pause_email(session, paused.id, utcnow() - timedelta(days=WEEK + 1), WEEK)
    session.commit()
    assert paused_until(session.get(type(paused), paused.id), utcnow()) is None
    _send_story(session, settings, send, "After the pause")
    assert _subjects_to(smtp, "paused@example.com") == ["After the pause"]
    assert _subjects_to(smtp, "other@example.com") == ["During the pause", "After the pause"]


def test_an_email_planned_before_the_pause_is_skipped_when_its_turn_comes(
    session, smtp, send, settings
):
    reader = factories.subscriber(session, "r@example.com", "news")
    story = factories.article(session, "news")
    session.commit()
    _, ids = article_fanned_out(session, settings, story.id)
    pause_email(session, reader.id, utcnow(), WEEK)
    session.commit()

    report = send(ids)
    assert (report.sent, report.skipped) == (0, 1)
    session.expire_all()
    [delivery] = session.scalars(select(Delivery))
    assert delivery.status is DeliveryStatus.SKIPPED
    assert delivery.last_error.startswith("the reader paused email until ")
    assert smtp.handler.received == []


def test_resuming_sends_the_next_article_again(session, smtp, send, settings):
    reader = factories.subscriber(session, "r@example.com", "news")
    pause_email(session, reader.id, utcnow(), WEEK)
    resume_email(session, reader.id)
    session.commit()
    _send_story(session, settings, send, "Back again")
    assert _subjects_to(smtp, "r@example.com") == ["Back again"]


def test_planning_reads_the_pause_against_the_time_it_plans_at(session):
    reader = factories.subscriber(session, "r@example.com", "news")
    story = factories.article(session, "news")
    now = utcnow()
    pause_email(session, reader.id, now, WEEK)
    session.commit()
    assert _planned(session, story.id, now + timedelta(days=WEEK - 1)) == 0
    assert _planned(session, story.id, now + timedelta(days=WEEK)) == 1


def test_an_alert_counts_only_readers_who_get_email_now(session):
    factories.subscriber(session, "a@example.com", "defense")
    paused = factories.subscriber(session, "b@example.com", "defense")
    now = utcnow()
    pause_email(session, paused.id, now, WEEK)
    session.commit()
    wanted = {"title": "Ceasefire", "channels": ["email"], "categories": ["defense"]}
    draft = validate_alert(session, wanted, "https://aze.media/", now)
    assert audience_size(session, draft, AUDIENCES, now) == {"email": 1}
    assert audience_size(session, draft, AUDIENCES, now + timedelta(days=WEEK)) == {"email": 2}


def test_only_a_subscribed_reader_can_pause(session):
    left = factories.subscriber(session, "left@example.com", "news")
    left.status = SubscriberStatus.UNSUBSCRIBED
    session.commit()
    with pytest.raises(PauseError, match="nothing to pause"):
        pause_email(session, left.id, utcnow(), WEEK)
