"""Pushes dropped for quiet hours or past the daily cap show on /ops/ with their reason and
in /metrics as their own series, through the skip plumbing every skip goes through
(notifier.ops.skips)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine

from notifier.delivery.compose import Composer
from notifier.delivery.dispatch import send_deliveries
from notifier.delivery.outlets import outlets
from notifier.delivery.push_cap import DAILY_CAP
from notifier.delivery.push_gate import STALE_BY_THEIR_END
from notifier.domain.editors import create_editor
from notifier.domain.quiet_hours import QuietHours, set_quiet_hours
from tests import factories
from tests.delivery.test_quiet_hours import NOW
from tests.support.queue import article_fanned_out
from tests.web.conftest import logged_in_client
from tests.web.test_metrics import INSIDE, scrape, value


@pytest.fixture
def dropped(session, settings, push_service):
    """Two Baku browsers asleep until 07:00 local (6.5 h away): an article push to them is
    older than QUIET_HOURS_STALE_HOURS by then, so it is dropped."""
    for _ in range(2):
        row = factories.push_subscription(session, push_service.new_subscription(), "news")
        set_quiet_hours(row, QuietHours(23, 7), "Asia/Baku")
    session.commit()
    bound = outlets(settings, Composer(settings))
    with time_machine.travel(NOW, tick=False):
        story = factories.article(session, "news")
        story.published_at = NOW - timedelta(minutes=1)
        session.commit()
        send_deliveries(session, article_fanned_out(session, settings, story.id)[1], bound,
                        settings)  # fmt: skip
    return NOW


@pytest.fixture
def capped(session, settings, push_service):
    """A London browser sent six articles in one day: the sixth is past PUSH_DAILY_CAP."""
    factories.push_subscription(session, push_service.new_subscription(), "news")
    bound = outlets(settings, Composer(settings))
    for hour in range(settings.push_daily_cap + 1):
        with time_machine.travel(NOW - timedelta(hours=8 - hour), tick=False):
            story = factories.article(session, "news")
            session.commit()
            send_deliveries(session, article_fanned_out(session, settings, story.id)[1], bound,
                            settings)  # fmt: skip
    return NOW


def test_ops_lists_quiet_hours_drops_by_reason(app, session, dropped):
    admin = create_editor(session, "admin@aze.media", "correct horse battery", "admin")
    session.commit()
    with time_machine.travel(dropped + timedelta(minutes=5)):
        page = logged_in_client(app, admin).get("/ops/").text
    row = f'<tr data-reason="{STALE_BY_THEIR_END}"><td>push</td><td>{STALE_BY_THEIR_END}</td>'
    assert f"{row}<td>2</td></tr>" in page


def test_metrics_count_quiet_hours_drops(client, dropped):
    with time_machine.travel(dropped + timedelta(minutes=5)):
        samples = scrape(client, environ_base=INSIDE)
    name = "notifier_deliveries_skipped_last_day"
    assert value(samples, name, channel="push", reason=STALE_BY_THEIR_END) == 2
    assert value(samples, name, channel="push", reason="other") == 0


def test_ops_and_metrics_show_daily_cap_skips(app, client, session, capped):
    admin = create_editor(session, "admin@aze.media", "correct horse battery", "admin")
    session.commit()
    with time_machine.travel(capped + timedelta(minutes=5)):
        page = logged_in_client(app, admin).get("/ops/").text
        samples = scrape(client, environ_base=INSIDE)
    assert f'<tr data-reason="{DAILY_CAP}"><td>push</td><td>{DAILY_CAP}</td><td>1</td></tr>' in page
    name = "notifier_deliveries_skipped_last_day"
    assert value(samples, name, channel="push", reason=DAILY_CAP) == 1
    assert value(samples, name, channel="push", reason="other") == 0


@pytest.fixture
def held(session, settings, push_service):
    """Three New York browsers quiet until 16:00 local (21:00 UTC), 30 minutes away."""
    for _ in range(3):
        row = factories.push_subscription(session, push_service.new_subscription(), "news")
        set_quiet_hours(row, QuietHours(14, 16), "America/New_York")
    session.commit()
    bound = outlets(settings, Composer(settings))
    with time_machine.travel(NOW, tick=False):
        story = factories.article(session, "news")
        session.commit()
        send_deliveries(session, article_fanned_out(session, settings, story.id)[1], bound,
                        settings)  # fmt: skip
    return NOW


def test_ops_and_metrics_show_pushes_held_for_quiet_hours(app, client, session, held):
    admin = create_editor(session, "admin@aze.media", "correct horse battery", "admin")
    session.commit()
    with time_machine.travel(held + timedelta(minutes=5)):
        page = logged_in_client(app, admin).get("/ops/").text
        samples = scrape(client, environ_base=INSIDE)
    [held_line] = [line for line in page.splitlines() if 'id="held"' in line]
    assert "quiet hours: <span data-held>3</span>, the next due at" in held_line
    assert 'datetime="2026-12-07T21:00:00+00:00"' in held_line  # 16:00 in New York
    assert value(samples, "notifier_push_held_for_quiet_hours") == 3
    with time_machine.travel(held + timedelta(minutes=31)):  # due now: no longer held back
        assert value(scrape(client, environ_base=INSIDE), "notifier_push_held_for_quiet_hours") == 0
