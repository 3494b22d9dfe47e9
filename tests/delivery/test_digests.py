"""Daily and weekly digests, planned by the beat and sent through the ordinary claim/send/
record path to a real SMTP server: each reader's at their own local hour, with exactly the
articles since their previous digest, once per period, nothing when there is nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import combinations

import pytest
import time_machine
from sqlalchemy import func, select

from notifier.db import session_factory
from notifier.delivery.compose import Composer
from notifier.delivery.digest_planning import plan_and_queue_digests, plan_due_digests
from notifier.delivery.dispatch import send_deliveries
from notifier.delivery.outlets import outlets
from notifier.domain.cadence import set_digest_time, set_email_cadences
from notifier.models import (
    Article,
    Category,
    Delivery,
    DeliveryStatus,
    Digest,
    DigestSchedule,
)
from tests import factories
from tests.support.queue import RecordingQueue, article_fanned_out

# Monday 1 June 2026, midnight UTC: Baku is UTC+4, London UTC+1 (summer), New York UTC-4.
START = datetime(2026, 6, 1, tzinfo=UTC)


def _reader(session, email, zone, hour=8, weekday=0, **cadences):
    """A reader who chose their cadences and digest time at START."""
    with time_machine.travel(START, tick=False):
        reader = factories.subscriber(session, email, *cadences)
        set_email_cadences(session, reader.id, cadences, START)
        set_digest_time(session, reader.id, zone, hour, weekday, START)
    session.commit()
    return reader


def _article(session, title, *slugs, seen):
    row = factories.article(session, *slugs, title=title)
    row.first_seen_at = row.published_at = seen
    session.commit()
    return row


def _beat(session, settings, at):
    """The beat task's work at `at`: the ids it queued."""
    queue = RecordingQueue()
    plan_and_queue_digests(session, settings, queue, at)
    return queue.ids


@pytest.fixture
def send(session, settings):
    bound = outlets(settings, Composer(settings))
    return lambda ids: send_deliveries(session, ids, bound, settings)


def _titles(message) -> list[str]:
    """Article titles in the text part, in order (lines starting '* ')."""
    text = message.get_body(("plain",)).get_content()
    return [line[2:] for line in text.splitlines() if line.startswith("* ")]


def test_each_reader_gets_their_daily_digest_at_their_own_local_hour(session, settings, smtp,
                                                                      send):  # fmt: skip
    _reader(session, "baku@example.com", "Asia/Baku", economy="daily")
    _reader(session, "london@example.com", "Europe/London", economy="daily", news="instant")
    ny = _reader(session, "ny@example.com", "America/New_York", economy="daily")
    _article(session, "Early", "economy", seen=START + timedelta(hours=1))
    _article(session, "Culture only", "culture", seen=START + timedelta(hours=2))
    _article(session, "Morning", "economy", seen=START + timedelta(hours=6))
    _article(session, "Noon", "economy", seen=START + timedelta(hours=10))
    _article(session, "Not announced", "economy", seen=START + timedelta(hours=1))
    session.execute(Article.__table__.update().where(Article.title == "Not announced")
                    .values(announce=False))  # fmt: skip
    session.commit()

    def at(hours, minutes=0):
        return START + timedelta(hours=hours, minutes=minutes)

    assert _beat(session, settings, at(3, 59)) == []  # 07:59 in Baku: nobody's hour yet
    sent = {}
    for moment, email in [(at(4), "baku"), (at(7), "london"), (at(12), "ny")]:
        ids = _beat(session, settings, moment + timedelta(seconds=30))
        assert len(ids) == 1
        assert send(ids).sent == 1
        (message,) = smtp.handler.to(f"{email}@example.com")
        sent[email] = _titles(message)
    assert sent == {
        "baku": ["Early"],  # 08:00 in Baku is 04:00 UTC
        "london": ["Morning", "Early"],  # 08:00 BST is 07:00 UTC; newest first
        "ny": ["Noon", "Morning", "Early"],  # 08:00 EDT is 12:00 UTC
    }

    # The next day each gets what came since their last digest; New York had nothing new.
    assert send(_beat(session, settings, at(28, 1))).sent == 1
    assert _titles(smtp.handler.to("baku@example.com")[-1]) == ["Noon", "Morning"]
    assert send(_beat(session, settings, at(31, 1))).sent == 1
    assert _titles(smtp.handler.to("london@example.com")[-1]) == ["Noon"]
    assert _beat(session, settings, at(36, 1)) == []
    assert len(smtp.handler.to("ny@example.com")) == 1
    session.expire_all()
    schedule = session.get(DigestSchedule, (ny.id, "daily"))
    assert schedule.next_at == at(60)  # moved on all the same: 3 June, 08:00 in New York


def test_the_beat_firing_twice_plans_one_digest(session, settings, smtp, send):
    reader = _reader(session, "twice@example.com", "Europe/London", economy="daily")
    _article(session, "Once", "economy", seen=START + timedelta(hours=1))
    moment = START + timedelta(hours=7, seconds=5)

    first = _beat(session, settings, moment)
    second = _beat(session, settings, moment + timedelta(seconds=1))
    assert (len(first), second) == (1, [])
    # Even planning straight from the schedules again finds nothing due.
    assert plan_due_digests(session, moment, 100) == (0, [])
    assert send(first + first).sent == 1
    assert send(first).sent == 0  # a redelivered task changes nothing
    assert session.scalar(select(func.count()).select_from(Digest)) == 1
    assert len(smtp.handler.to(reader.email)) == 1


def test_workers_down_for_days_give_one_late_digest_then_the_usual_hour(session, settings, smtp,
                                                                       send):  # fmt: skip
    reader = _reader(session, "late@example.com", "Asia/Baku", economy="daily")
    for day in range(3):
        _article(session, f"Day {day}", "economy", seen=START + timedelta(days=day, hours=9))
    back = START + timedelta(days=3, hours=9)  # 13:00 in Baku, three digest hours missed

    assert send(_beat(session, settings, back)).sent == 1
    assert _beat(session, settings, back + timedelta(minutes=1)) == []
    (message,) = smtp.handler.to(reader.email)
    assert _titles(message) == ["Day 2", "Day 1", "Day 0"]
    schedule = session.get(DigestSchedule, (reader.id, "daily"))
    assert schedule.next_at == datetime(2026, 6, 5, 4, tzinfo=UTC)  # tomorrow 08:00 in Baku


def test_a_weekly_digest_comes_on_the_reader_s_weekday_and_hour(session, settings, smtp, send):
    # Wednesday 18:00 in New York is Wednesday 22:00 UTC.
    reader = _reader(session, "weekly@example.com", "America/New_York", hour=18, weekday=2,
                     economy="weekly")  # fmt: skip
    _article(session, "Monday story", "economy", seen=START + timedelta(hours=5))
    _article(session, "Tuesday story", "economy", seen=START + timedelta(days=1, hours=5))

    assert _beat(session, settings, START + timedelta(days=1, hours=22, minutes=1)) == []
    assert _beat(session, settings, START + timedelta(days=2, hours=21, minutes=59)) == []
    assert send(_beat(session, settings, START + timedelta(days=2, hours=22))).sent == 1
    (message,) = smtp.handler.to(reader.email)
    assert _titles(message) == ["Tuesday story", "Monday story"]
    assert "weekly digest" in message["Subject"]
    schedule = session.get(DigestSchedule, (reader.id, "weekly"))
    assert schedule.next_at == datetime(2026, 6, 10, 22, tzinfo=UTC)  # next Wednesday


def test_an_article_emailed_instantly_is_not_repeated_in_the_digest(session, settings, smtp,
                                                                   send):  # fmt: skip
    reader = _reader(session, "mixed@example.com", "Europe/London", news="instant",
                     economy="daily")  # fmt: skip
    both = _article(session, "In both", "news", "economy", seen=START + timedelta(hours=1))
    # Sent by the real clock, months after START: published just now, so not stale news
    # (notifier.delivery.stale_news), which would be skipped and left for the digest.
    both.published_at = datetime.now(UTC)
    session.commit()
    _article(session, "Economy only", "economy", seen=START + timedelta(hours=2))
    _, ids = article_fanned_out(session, settings, both.id)
    assert send(ids).sent == 1

    assert send(_beat(session, settings, START + timedelta(hours=7))).sent == 1
    _instant, digest = smtp.handler.to(reader.email)
    assert _titles(digest) == ["Economy only"]


def test_a_digest_caps_each_category_and_links_to_the_rest(session, settings, smtp, send):
    reader = _reader(session, "many@example.com", "Europe/London", economy="daily",
                     news="daily")  # fmt: skip
    for n in range(settings.digest_category_cap + 2):
        _article(session, f"Economy {n}", "economy", seen=START + timedelta(minutes=n + 1))
    _article(session, "News 0", "news", seen=START + timedelta(hours=1))

    assert send(_beat(session, settings, START + timedelta(hours=7))).sent == 1
    (message,) = smtp.handler.to(reader.email)
    titles = _titles(message)
    cap = settings.digest_category_cap
    assert titles[:cap] == [f"Economy {n}" for n in range(cap + 1, 1, -1)]
    assert titles[cap:] == ["News 0"]
    html = message.get_body(("html",)).get_content()
    assert "2 more in Economy on the site" in html
    assert f"{settings.site_url.rstrip('/')}/category/economy/" in html
    assert "Switch to instant emails" in html and "Switch to a weekly digest" in html
    assert message["List-Unsubscribe"]
    delivery = session.scalar(select(Delivery).where(Delivery.digest_id.is_not(None)))
    assert delivery.status == DeliveryStatus.SENT


def test_two_beats_at_once_plan_one_digest(session, settings, database_url):
    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("SQLite writes one transaction at a time: no two planners overlap")
    _reader(session, "race@example.com", "Europe/London", economy="daily")
    _article(session, "Raced", "economy", seen=START + timedelta(hours=1))
    moment = START + timedelta(hours=7)
    with session_factory(database_url)() as other:
        first = plan_due_digests(session, moment, 100)  # holds the schedule, not committed
        assert plan_due_digests(other, moment, 100) == (0, [])  # skips what the first holds
        session.commit()
        assert plan_due_digests(other, moment, 100) == (0, [])  # and after, nothing is due
        other.commit()
    assert first[0] == 1 and len(first[1]) == 1
    assert session.scalar(select(func.count()).select_from(Digest)) == 1


def test_a_digest_the_server_deferred_is_retried_with_the_same_articles(session, settings, smtp):
    reader = _reader(session, "retry@example.com", "Europe/London", economy="daily")
    _article(session, "Kept", "economy", seen=START + timedelta(hours=1))
    ids = _beat(session, settings, START + timedelta(hours=7))
    _article(session, "Later", "economy", seen=START + timedelta(hours=8))
    bound = outlets(settings, Composer(settings))
    smtp.handler.temporary_failures = 1  # the server answers 451 once

    # Sent on the clock of that morning: a digest is as fresh as its planning.
    first = send_deliveries(session, ids, bound, settings, now=lambda: START + timedelta(hours=7))
    assert (first.sent, list(first.retry_in)) == (0, ids)
    later = START + timedelta(hours=8)  # past the backoff
    assert send_deliveries(session, ids, bound, settings, now=lambda: later).sent == 1
    (message,) = smtp.handler.to(reader.email)
    assert _titles(message) == ["Kept"]  # fixed when planned, not read again at sending


def test_readers_with_the_same_articles_share_one_rendering(session, settings, smtp):
    """More distinct digests than the article layouts' cache holds, each for two readers
    whose deliveries come apart: each distinct digest is rendered once, not once per reader
    (nor again once the other digests pushed it out)."""
    slugs = [c.slug for c in session.scalars(select(Category).order_by(Category.id))][:13]
    pairs = list(combinations(slugs, 2))[:70]  # 70 distinct digests, over the 64 of articles
    for slug in slugs:
        _article(session, f"Only {slug}", slug, seen=START + timedelta(hours=1))
    for copy in ("a", "b"):  # all the a readers' schedules first, then the b readers'
        for n, pair in enumerate(pairs):
            _reader(session, f"{copy}{n}@example.com", "Europe/London",
                    **dict.fromkeys(pair, "daily"))  # fmt: skip
    ids = _beat(session, settings, START + timedelta(hours=7))
    composer = Composer(settings)
    rendered: list[str] = []  # the kinds the renderer was asked for
    render = composer.renderer.render_email
    composer.renderer.render_email = lambda kind, *args: (
        rendered.append(kind) or render(kind, *args)
    )

    report = send_deliveries(session, ids, outlets(settings, composer), settings)
    assert report.sent == 2 * len(pairs)
    assert rendered == ["digest"] * len(pairs)
    (first,), (second,) = smtp.handler.to("a7@example.com"), smtp.handler.to("b7@example.com")
    assert _titles(first) == _titles(second)
    assert sorted(_titles(first)) == sorted(f"Only {slug}" for slug in pairs[7])
