"""PUSH_DAILY_CAP through the real send path and a real push service: the sixth article push
of a browser's local day is skipped with the reason, a breaking alert still goes (and
counts), the next local day starts afresh; and two workers gating pushes for one browser at
once cannot both take its last slot."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from sqlalchemy import select

from notifier.db import session_factory
from notifier.delivery.addressing import Addressee, Unwanted, address_chunk
from notifier.delivery.compose import Composer
from notifier.delivery.dispatch import send_deliveries
from notifier.delivery.outlets import outlets
from notifier.delivery.push_cap import DAILY_CAP, gate_daily_cap
from notifier.domain.audiences import BROWSERS
from notifier.domain.quiet_hours import set_quiet_hours
from notifier.models import Delivery, DeliveryStatus, PushSubscription
from tests import factories
from tests.support.queue import alert_fanned_out, article_fanned_out

# Monday 7 December 2026. Baku is UTC+4: its Tuesday starts at 20:00 UTC on Monday.
MORNING = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)


@pytest.fixture
def bound(settings):
    return outlets(settings, Composer(settings))


def _browser(session, push_service, zone):
    browser = push_service.new_subscription()
    row = factories.push_subscription(session, browser, "news")
    set_quiet_hours(row, None, zone)
    session.commit()
    return browser, row


def _article(session, settings, at) -> list[int]:
    with time_machine.travel(at, tick=False):
        story = factories.article(session, "news")
        story.published_at = at
        session.commit()
        return article_fanned_out(session, settings, story.id)[1]


def _alert(session, settings, at) -> list[int]:
    with time_machine.travel(at, tick=False):
        alert = factories.alert(session, "https://aze.media/", "news", channels=("push",),
                                title="Breaking")  # fmt: skip
        session.commit()
        return alert_fanned_out(session, settings, alert.id)[1]


def _send(session, settings, bound, ids, at):
    with time_machine.travel(at, tick=False):
        return send_deliveries(session, ids, bound, settings)


def test_the_sixth_article_push_of_the_day_is_skipped_but_not_a_breaking_alert(
    session, settings, push_service, bound
):
    assert settings.push_daily_cap == 5  # the default, as shipped
    baku, baku_row = _browser(session, push_service, "Asia/Baku")
    london, london_row = _browser(session, push_service, "Europe/London")
    for hour in range(5):
        at = MORNING + timedelta(hours=hour)
        assert _send(session, settings, bound, _article(session, settings, at), at).sent == 2
    sixth_at = MORNING + timedelta(hours=6)
    report = _send(session, settings, bound, _article(session, settings, sixth_at), sixth_at)
    assert (report.sent, report.skipped) == (0, 2)
    alert_at = MORNING + timedelta(hours=7)
    assert _send(session, settings, bound, _alert(session, settings, alert_at), alert_at).sent == 2
    assert len(baku.wait_for(6)) == len(london.wait_for(6)) == 6  # five articles, the alert
    titles = [p.json()["title"] for p in baku.received]
    assert titles[-1].endswith("Breaking")

    # 20:30 UTC: already Tuesday in Baku (a new day, a new count), still Monday in London.
    evening = datetime(2026, 12, 7, 20, 30, tzinfo=UTC)
    report = _send(session, settings, bound, _article(session, settings, evening), evening)
    assert (report.sent, report.skipped) == (1, 1)
    session.expire_all()
    rows = session.scalars(select(Delivery).order_by(Delivery.id)).all()
    capped = [(d.push_subscription_id, d.last_error) for d in rows
              if d.status is DeliveryStatus.SKIPPED]  # fmt: skip
    assert capped == [(baku_row.id, DAILY_CAP), (london_row.id, DAILY_CAP),
                      (london_row.id, DAILY_CAP)]  # fmt: skip
    assert [d.push_day for d in rows if d.push_subscription_id == baku_row.id][-1] == "2026-12-08"
    assert len(baku.wait_for(7)) == 7 and len(london.received) == 6


def test_a_retried_push_is_counted_once(session, settings, push_service, bound):
    """A push counted, refused for now (429) and sent on its retry takes one slot."""
    from tests.support.push_service import Reply

    browser, _ = _browser(session, push_service, "Europe/London")
    push_service.script(browser, Reply(429, retry_after=1))
    ids = _article(session, settings, MORNING)
    assert _send(session, settings, bound, ids, MORNING).sent == 0
    assert _send(session, settings, bound, ids, MORNING + timedelta(seconds=5)).sent == 1
    for hour in range(1, 5):
        at = MORNING + timedelta(hours=hour)
        assert _send(session, settings, bound, _article(session, settings, at), at).sent == 1
    at = MORNING + timedelta(hours=6)
    assert _send(session, settings, bound, _article(session, settings, at), at).skipped == 1


def _claimed_entries(session, settings, ids):
    """What a worker holds after addressing these push deliveries."""
    return address_chunk(session, "push", BROWSERS, ids)


def _postgresql_only(session):
    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("SQLite writes one transaction at a time: no two workers overlap")


def test_two_workers_cannot_both_take_the_last_slot(
    session, settings, push_service, bound, database_url
):
    """Worker A has locked the browser (it is counting); worker B, gating another push for
    the same browser, waits for A's commit and then counts A's push: over the cap, skipped.
    Without the lock both would read four and both would pass."""
    _postgresql_only(session)
    _, row = _browser(session, push_service, "Europe/London")
    for hour in range(4):
        at = MORNING + timedelta(hours=hour)
        assert _send(session, settings, bound, _article(session, settings, at), at).sent == 1
    a_ids = _article(session, settings, MORNING + timedelta(hours=5))
    b_ids = _article(session, settings, MORNING + timedelta(hours=5))
    factory = session_factory(database_url)
    worker_a, worker_b = factory(), factory()
    at = MORNING + timedelta(hours=5, minutes=1)
    answer: list = []

    def gate_b():
        with time_machine.travel(at, tick=False):
            answer.extend(gate_daily_cap(worker_b, _claimed_entries(worker_b, settings, b_ids),
                                         at, settings))  # fmt: skip

    thread = threading.Thread(target=gate_b)
    try:
        worker_a.execute(select(PushSubscription.id).where(PushSubscription.id == row.id)
                         .with_for_update(key_share=True)).all()  # as the gate locks  # fmt: skip
        thread.start()
        thread.join(0.5)
        assert thread.is_alive(), "B waits for A's lock"
        worker_a.execute(Delivery.__table__.update().where(Delivery.id.in_(a_ids))
                         .values(push_day="2026-12-07"))  # fmt: skip
        worker_a.commit()  # A counted its push (the fifth) and let go
        thread.join(10)
    finally:
        worker_a.rollback()
        thread.join(10)
        worker_a.close()
        worker_b.close()
    [entry] = answer
    assert isinstance(entry, Unwanted) and entry.reason == DAILY_CAP


def test_racing_workers_pass_exactly_the_slots_left(session, settings, push_service, database_url):
    """Two workers gate a push each for one browser with one slot left, at the same moment."""
    _postgresql_only(session)
    _browser(session, push_service, "America/New_York")
    ids = [_article(session, settings, MORNING + timedelta(minutes=n))[0] for n in range(6)]
    session.execute(Delivery.__table__.update().where(Delivery.id.in_(ids[:4]))
                    .values(push_day="2026-12-07", status=DeliveryStatus.SENT))  # fmt: skip
    session.commit()
    factory = session_factory(database_url)
    start = threading.Barrier(2)
    passed: list[bool] = []
    at = datetime(2026, 12, 7, 15, 0, tzinfo=UTC)  # 10:00 in New York

    def worker(delivery_id):
        with factory() as own:
            entries = _claimed_entries(own, settings, [delivery_id])
            start.wait()
            [entry] = gate_daily_cap(own, entries, at, settings)
            passed.append(isinstance(entry, Addressee))

    threads = [threading.Thread(target=worker, args=(i,)) for i in ids[4:]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(passed) == [False, True]
