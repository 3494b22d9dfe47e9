"""Quiet hours through the real send path and a real push service (HTTP, VAPID, RFC 8291),
with the clock controlled: a push inside a browser's quiet hours is held as a row due when
they end and arrives then, once; one whose news would be stale by then is dropped and
recorded; an alert the editor marked goes through them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from sqlalchemy import select

from notifier.delivery.compose import Composer
from notifier.delivery.dispatch import deliver, send_deliveries
from notifier.delivery.outlets import outlets
from notifier.delivery.push_gate import HELD, STALE_BY_THEIR_END, STALE_WHEN_RELEASED
from notifier.domain.alerts import create_alert, validate_alert
from notifier.domain.deliveries import overdue_delivery_ids
from notifier.domain.quiet_hours import QuietHours, set_quiet_hours
from notifier.models import Delivery, DeliveryOutcome, DeliveryStatus
from notifier.timeutil import utcnow
from tests import factories
from tests.support.queue import RecordingQueue, alert_fanned_out, article_fanned_out

# Monday 7 December 2026, 20:30 UTC: 00:30 on Tuesday in Baku (UTC+4), 20:30 in London
# (UTC+0 in winter), 15:30 in New York (UTC-5).
NOW = datetime(2026, 12, 7, 20, 30, tzinfo=UTC)


def _browser(session, push_service, zone, quiet, *slugs):
    browser = push_service.new_subscription()
    row = factories.push_subscription(session, browser, *(slugs or ("news",)))
    set_quiet_hours(row, QuietHours(*quiet) if quiet else None, zone)
    session.commit()
    return browser, row


def _publish(session, settings, published_at, slug="news"):
    story = factories.article(session, slug)
    story.published_at = published_at
    session.commit()
    return article_fanned_out(session, settings, story.id)[1]


def _rows(session) -> dict[int, Delivery]:
    session.expire_all()
    return {d.push_subscription_id: d for d in session.scalars(select(Delivery))}


def _alert(session, settings, override: bool) -> list[int]:
    """An editor's push alert to News readers, fanned out now: the ids queued."""
    data = {"title": "Breaking", "channels": ["push"], "categories": ["news"],
            "override_quiet_hours": override}  # fmt: skip
    draft = validate_alert(session, data, settings.site_url, utcnow())
    alert, _ = create_alert(session, draft, utcnow())
    session.commit()
    return alert_fanned_out(session, settings, alert.id)[1]


@pytest.fixture
def bound(settings):
    return outlets(settings, Composer(settings))


def test_held_until_quiet_hours_end_then_arrives_once(session, settings, push_service, bound):
    baku, baku_row = _browser(session, push_service, "Asia/Baku", (23, 7))
    london, london_row = _browser(session, push_service, "Europe/London", (22, 7))
    ny, ny_row = _browser(session, push_service, "America/New_York", (14, 16))
    queue = RecordingQueue()
    with time_machine.travel(NOW, tick=False):
        ids = _publish(session, settings, NOW - timedelta(minutes=5))
        report = deliver(session, ids, bound, settings, queue)

    assert report.sent == 1 and len(london.wait_for(1)) == 1  # 20:30 in London: not quiet
    rows = _rows(session)
    # New York: quiet until 16:00 local = 21:00 UTC, the article then 35 minutes old: held.
    ny_until = datetime(2026, 12, 7, 21, 0, tzinfo=UTC)
    held = rows[ny_row.id]
    assert (held.status, held.outcome, held.last_error) == (DeliveryStatus.PENDING, None, HELD)
    assert held.next_attempt_at == held.held_until == ny_until and held.attempts == 0
    # Queued for its time (capped at BROKER_ETA_MAX_SECONDS: a hop that queues it again).
    assert queue.chunks == [([held.id], settings.broker_eta_max_seconds)]
    # Baku: quiet until 07:00 local = 03:00 UTC, the article 6.6 h old by then: dropped.
    dropped = rows[baku_row.id]
    assert (dropped.status, dropped.outcome) == (DeliveryStatus.SKIPPED, DeliveryOutcome.SKIPPED)
    assert dropped.last_error == STALE_BY_THEIR_END
    assert rows[london_row.id].status is DeliveryStatus.SENT

    with time_machine.travel(ny_until - timedelta(minutes=1), tick=False):
        early = RecordingQueue()
        assert deliver(session, [held.id], bound, settings, early).sent == 0  # the hop
        assert early.chunks == [([held.id], 60.0)] and ny.received == []
    with time_machine.travel(ny_until + timedelta(seconds=1), tick=False):
        assert send_deliveries(session, [held.id], bound, settings).sent == 1
        assert send_deliveries(session, [held.id], bound, settings).sent == 0
    [push] = ny.wait_for(1)
    assert push.json()["title"]
    assert len(ny.received) == 1 and baku.received == []
    assert _rows(session)[ny_row.id].status is DeliveryStatus.SENT


def test_a_held_push_whose_task_was_lost_is_found_by_the_sweeper_only_once_due(
    session, settings, push_service, bound
):
    """A worker restart or a lost broker task loses nothing: the held row is in the database,
    due at the end of quiet hours, and the sweeper queues it then, not before."""
    _browser(session, push_service, "America/New_York", (14, 16))
    with time_machine.travel(NOW, tick=False):
        ids = _publish(session, settings, NOW)
        send_deliveries(session, ids, bound, settings)  # the queued hop is "lost"
    due = datetime(2026, 12, 7, 21, 0, tzinfo=UTC)

    def overdue(at):
        return overdue_delivery_ids(session, at, settings.sweep_seconds,
                                    settings.sweep_requeue_after_seconds, 100)  # fmt: skip

    assert overdue(due - timedelta(seconds=1)) == []
    assert overdue(due + timedelta(seconds=settings.sweep_requeue_after_seconds + 1)) == ids


def test_a_held_push_that_comes_due_too_late_is_dropped_as_stale(
    session, settings, push_service, bound
):
    """Workers were down when the quiet hours ended: the news is older than
    QUIET_HOURS_STALE_HOURS when the row is finally claimed, so it is not sent."""
    ny, row = _browser(session, push_service, "America/New_York", (14, 16))
    with time_machine.travel(NOW, tick=False):
        ids = _publish(session, settings, NOW - timedelta(hours=3))  # 3.5 h old at 16:00
        send_deliveries(session, ids, bound, settings)
    assert _rows(session)[row.id].last_error == HELD
    late = datetime(2026, 12, 7, 21, 0, tzinfo=UTC) + timedelta(hours=1)
    with time_machine.travel(late, tick=False):
        report = send_deliveries(session, ids, bound, settings)
    assert (report.sent, report.skipped) == (0, 1)
    dropped = _rows(session)[row.id]
    assert (dropped.outcome, dropped.last_error) == (DeliveryOutcome.SKIPPED, STALE_WHEN_RELEASED)
    assert ny.received == []


@pytest.mark.parametrize("override", [True, False])
def test_an_alert_marked_by_the_editor_goes_through_quiet_hours(
    session, settings, push_service, bound, override
):
    baku, row = _browser(session, push_service, "Asia/Baku", (0, 3))
    with time_machine.travel(NOW, tick=False):
        ids = _alert(session, settings, override)
        report = send_deliveries(session, ids, bound, settings)
    if override:
        assert report.sent == 1 and len(baku.wait_for(1)) == 1
        assert baku.received[0].urgency == "high"
    else:
        assert (report.sent, report.held) == (0, 1)  # 00:30 in Baku: held until 03:00
        held = _rows(session)[row.id]
        assert held.held_until == datetime(2026, 12, 7, 23, 0, tzinfo=UTC)
        assert baku.received == []


def test_quiet_hours_follow_the_local_clock_across_midnight_and_summer_time():
    from notifier.domain.quiet_hours import quiet_until

    night = QuietHours(22, 7)
    london = "Europe/London"
    # 29 March 2026: the clocks go forward at 01:00 UTC; 07:00 local is then 06:00 UTC.
    assert quiet_until(night, london, datetime(2026, 3, 28, 23, 0, tzinfo=UTC)) == datetime(
        2026, 3, 29, 6, 0, tzinfo=UTC
    )
    assert quiet_until(night, london, datetime(2026, 3, 28, 21, 59, tzinfo=UTC)) is None
    assert quiet_until(night, london, datetime(2026, 3, 29, 6, 0, tzinfo=UTC)) is None
    assert quiet_until(QuietHours(1, 5), "Asia/Baku", datetime(2026, 12, 7, 21, 0, tzinfo=UTC)) == (
        datetime(2026, 12, 8, 1, 0, tzinfo=UTC)
    )
    assert quiet_until(None, london, datetime(2026, 3, 28, 23, 0, tzinfo=UTC)) is None
