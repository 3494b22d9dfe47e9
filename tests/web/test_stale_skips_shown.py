"""A stale skip (notifier.delivery.stale_news) shows on /ops/ with its reason and in /metrics
as its own series, like any skip."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from notifier.delivery.compose import Composer
from notifier.delivery.dispatch import send_deliveries
from notifier.delivery.outlets import outlets
from notifier.domain.editors import create_editor
from tests import factories
from tests.support.queue import article_fanned_out
from tests.web.conftest import logged_in_client
from tests.web.test_metrics import INSIDE, scrape, value


@pytest.fixture
def stale_and_fresh(session, settings):
    """Three readers; one stale article (13 hours old) and one fresh, sent."""
    for n in range(3):
        factories.subscriber(session, f"r{n}@example.com", "news")
    bound = outlets(settings, Composer(settings))
    for hours in (13, 1):
        story = factories.article(session, "news")
        story.published_at = datetime.now(UTC) - timedelta(hours=hours)
        session.commit()
        send_deliveries(session, article_fanned_out(session, settings, story.id)[1], bound,
                        settings)  # fmt: skip


def test_ops_lists_stale_skips_by_reason(app, session, stale_and_fresh):
    admin = create_editor(session, "admin@aze.media", "correct horse battery", "admin")
    session.commit()
    page = logged_in_client(app, admin).get("/ops/").text
    assert '<tr data-reason="stale"><td>email</td><td>stale</td><td>3</td></tr>' in page


def test_metrics_count_stale_skips_per_channel(client, stale_and_fresh):
    samples = scrape(client, environ_base=INSIDE)
    name = "notifier_deliveries_skipped_last_day"
    assert value(samples, name, channel="email", reason="stale") == 3
    assert value(samples, name, channel="email", reason="other") == 0
    assert value(samples, name, channel="push", reason="stale") == 0
