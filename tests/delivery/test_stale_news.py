"""Stale news is not sent late: an instant email or push for an article older than
STALE_NEWS_HOURS (default 12) when it could go is skipped with the reason "stale", and a
reader who also takes a digest finds it in their next digest, once. Alerts never go stale."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from sqlalchemy import select

from notifier.delivery.compose import Composer
from notifier.delivery.digest_planning import plan_and_queue_digests
from notifier.delivery.dispatch import send_deliveries
from notifier.delivery.outlets import outlets
from notifier.domain.cadence import set_digest_time, set_email_cadences
from notifier.models import Delivery, DeliveryStatus, DigestLeftover, DigestSchedule
from tests import factories
from tests.support.queue import RecordingQueue, alert_fanned_out, article_fanned_out

HOUR = timedelta(hours=1)


@pytest.fixture
def send(session, settings):
    bound = outlets(settings, Composer(settings))
    return lambda ids: send_deliveries(session, ids, bound, settings)


def _story(session, settings, *slugs, title, published_hours_ago, seen_hours_ago=None):
    """An article published (and first seen) that long before now, fanned out: its ids."""
    now = datetime.now(UTC)
    row = factories.article(session, *slugs, title=title)
    row.published_at = None if published_hours_ago is None else now - published_hours_ago * HOUR
    row.first_seen_at = now - (seen_hours_ago or published_hours_ago or 0) * HOUR
    session.commit()
    return article_fanned_out(session, settings, row.id)[1]


def _deliveries(session):
    session.expire_all()
    return [(d.channel, d.status, d.last_error) for d in
            session.scalars(select(Delivery).order_by(Delivery.id))]  # fmt: skip


def _reader(session, email, **cadences):
    reader = factories.subscriber(session, email, *cadences)
    now = datetime.now(UTC)
    set_email_cadences(session, reader.id, cadences, now)
    set_digest_time(session, reader.id, "Europe/London", 8, 0, now)
    session.commit()
    return reader


def _digest_titles(session, settings, send, smtp, reader):
    """Plan the reader's next digest (at its hour) and send it: the titles it carried."""
    session.expire_all()
    due = min(s.next_at for s in session.scalars(
        select(DigestSchedule).where(DigestSchedule.subscriber_id == reader.id)))  # fmt: skip
    queue = RecordingQueue()
    with time_machine.travel(due + timedelta(seconds=1), tick=False):
        plan_and_queue_digests(session, settings, queue, due + timedelta(seconds=1))
        if not queue.ids:
            return None
        assert send(queue.ids).sent == 1
    text = smtp.handler.to(reader.email)[-1].get_body(("plain",)).get_content()
    return [line[2:] for line in text.splitlines() if line.startswith("* ")]


def test_an_instant_email_for_a_stale_article_is_skipped_and_a_fresh_one_sent(
    session, settings, smtp, send
):
    assert settings.stale_news_hours == 12  # the default, which this test measures against
    factories.subscriber(session, "reader@example.com", "news")
    session.commit()
    assert send(_story(session, settings, "news", title="Old", published_hours_ago=13)).sent == 0
    assert send(_story(session, settings, "news", title="New", published_hours_ago=11)).sent == 1
    # No published time in the feed: the time we first saw it counts.
    assert send(_story(session, settings, "news", title="Undated", published_hours_ago=None,
                       seen_hours_ago=13)).sent == 0  # fmt: skip
    assert _deliveries(session) == [
        ("email", DeliveryStatus.SKIPPED, "stale"),
        ("email", DeliveryStatus.SENT, None),
        ("email", DeliveryStatus.SKIPPED, "stale"),
    ]
    assert [m["Subject"] for m in smtp.handler.to("reader@example.com")] == ["New"]
    # A reader without a digest has nothing left for later.
    assert session.scalars(select(DigestLeftover)).all() == []


def test_a_push_for_a_stale_article_is_skipped(session, settings, send, push_service):
    browser = push_service.new_subscription()
    factories.push_subscription(session, browser, "news")
    assert send(_story(session, settings, "news", title="Old", published_hours_ago=13)).sent == 0
    assert send(_story(session, settings, "news", title="New", published_hours_ago=1)).sent == 1
    assert [p.json()["title"] for p in browser.wait_for(1)] == ["New"]
    assert _deliveries(session) == [
        ("push", DeliveryStatus.SKIPPED, "stale"),
        ("push", DeliveryStatus.SENT, None),
    ]


def test_a_breaking_alert_is_never_skipped_as_stale(session, settings, smtp, send):
    factories.subscriber(session, "defense@example.com", "defense")
    long_ago = datetime.now(UTC) - 13 * HOUR
    alert = factories.alert(session, settings.site_url, "defense", at=long_ago)
    session.commit()
    _, ids = alert_fanned_out(session, settings, alert.id)
    assert send(ids).sent == 1


def test_a_stale_instant_article_goes_in_the_reader_s_next_digest_once(
    session, settings, smtp, send
):
    reader = _reader(session, "mixed@example.com", news="instant", economy="daily")
    _reader(session, "instant@example.com", news="instant")
    assert send(_story(session, settings, "news", title="Late news",
                       published_hours_ago=13)).sent == 0  # fmt: skip
    # Only the reader who takes a digest has it left for one.
    assert [(r.subscriber_id) for r in session.scalars(select(DigestLeftover))] == [reader.id]

    assert _digest_titles(session, settings, send, smtp, reader) == ["Late news"]
    (message,) = smtp.handler.to(reader.email)
    assert "NEWS" in message.get_body(("plain",)).get_content()  # under its own category
    assert session.scalars(select(DigestLeftover)).all() == []
    assert _digest_titles(session, settings, send, smtp, reader) is None, "not twice"


def test_a_skipped_instant_email_is_not_taken_for_one_already_emailed(
    session, settings, smtp, send
):
    """An article in an instant and a digest category: its instant email was skipped as
    stale, so the digest's "already emailed instantly" rule must not leave it out."""
    reader = _reader(session, "both@example.com", news="instant", economy="daily")
    ids = _story(session, settings, "news", "economy", title="Both", published_hours_ago=13,
                 seen_hours_ago=0)  # fmt: skip
    assert send(ids).sent == 0
    assert _digest_titles(session, settings, send, smtp, reader) == ["Both"]
    assert _digest_titles(session, settings, send, smtp, reader) is None


def test_a_digest_planned_while_the_stale_email_waited_leaves_it_to_the_next_one(
    session, settings, smtp, send
):
    """Workers back after an outage: the digest is planned while the instant email is still
    pending (so it leaves the article out), then the email is skipped as stale: the next
    digest carries it."""
    reader = _reader(session, "race@example.com", news="instant", economy="daily")
    ids = _story(session, settings, "news", "economy", title="Waited", published_hours_ago=13,
                 seen_hours_ago=0)  # fmt: skip
    economy = _story(session, settings, "economy", title="Economy", published_hours_ago=0)
    assert send(economy).sent == 0  # a digest category: no instant email planned at all
    assert _digest_titles(session, settings, send, smtp, reader) == ["Economy"]
    assert send(ids).sent == 0
    assert _digest_titles(session, settings, send, smtp, reader) == ["Waited"]
