"""Deliveries queued again after a fault are data: a dead worker's claims taken over and the
re-queue after the broker lost its queues are recorded with their cause and shown beside the
sweeper's re-queues in `notifier status` (text and --json), on /ops/ and in /metrics. In
normal operation each count is zero, and the pages say so plainly."""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis
from sqlalchemy import select

from notifier.broker_marker import BrokerMarker
from notifier.celery_app import make_celery
from notifier.db import session_scope
from notifier.delivery.takeover import LocalPool
from notifier.holders import holder_name
from notifier.models import Recovery, RecoveryCause, WorkerHeartbeat
from notifier.ops.recoveries import forget_recoveries, record_recovery, recovery_summary
from notifier.recovery import check_broker, take_over_dead_workers
from notifier.timeutil import utcnow
from tests import factories
from tests.conftest import make_settings
from tests.support.claims import claimed_ids
from tests.support.ops_views import admin_client, shown_recoveries
from tests.support.queue import article_fanned_out

NONE = {"dead_worker": 0, "broker_lost": 0, "broker_unreachable": 0, "sweeper": 0}


@pytest.fixture
def settings(tmp_path, pg_database_url, redis_url):
    settings = make_settings(tmp_path, DATABASE_URL=pg_database_url, CELERY_BROKER_URL=redis_url)
    make_celery(settings)  # the current app: what recovery queues goes to the test broker
    return settings


def _planned(settings, count: int) -> list[int]:
    """Planned as the fan-out does it; what it queued went to a recorder, not the broker."""
    with session_scope(settings.database_url) as session:
        for n in range(count):
            factories.subscriber(session, f"r{n}@example.com", "news")
        story = factories.article(session, "news")
        return article_fanned_out(session, settings, story.id)[1]


def test_in_normal_operation_every_count_is_zero_and_says_so(settings):
    shown = shown_recoveries(settings)
    assert shown.counts == NONE
    assert shown.status_line == (
        "Recovered after faults (last day): 0 deliveries taken over from dead workers, "
        "0 queued again after the broker lost its queues, 0 handed over once the unreachable "
        "broker answered, 0 re-queued by the sweeper (zero in normal operation)"
    )
    assert shown.ops == (
        "Queued again in the last day: 0 deliveries taken over from dead workers, 0 after the "
        "broker lost its queues, 0 once the unreachable broker answered, 0 by the sweeper. "
        "Each is a fault handled; this is zero in normal operation."
    )


def test_a_dead_workers_claims_taken_over_show_as_recovered(settings, pg_database_url):
    ids = _planned(settings, 3)
    dead = holder_name("gone@host", 100, 101)
    with session_scope(pg_database_url) as session:
        stale = utcnow() - timedelta(seconds=settings.worker_stale_seconds + 5)
        session.add(WorkerHeartbeat(hostname="gone@host", seen_at=stale, started_at=stale,
                                    concurrency=2, active_tasks=1, pid=100))  # fmt: skip
        claimed_ids(session, ids[:2], utcnow(), 300, "token", dead)
        session.commit()

    local = LocalPool("alive@host", 200, children=None)
    assert take_over_dead_workers(settings, local, set(), starting=False) == 2
    assert take_over_dead_workers(settings, local, set(), starting=False) == 0, "once"

    shown = shown_recoveries(settings)
    assert shown.counts == {**NONE, "dead_worker": 2}
    assert shown.status_line.startswith(
        "Recovered after faults (last day): 2 deliveries taken over from dead workers, 0 "
    )
    assert shown.ops.startswith("Queued again in the last day: 2 deliveries taken over from")
    metrics = admin_client(settings).get("/metrics").text
    assert 'notifier_deliveries_recovered_last_day{cause="dead_worker"} 2.0' in metrics
    assert 'notifier_deliveries_recovered_last_day{cause="broker_lost"} 0.0' in metrics


def test_a_broker_that_lost_its_queues_shows_as_recovered(settings, pg_database_url, redis_url):
    ids = _planned(settings, 3)
    marker = BrokerMarker(redis_url)
    try:
        assert check_broker(settings, marker), "a broker never seen: unsent work queued again"
        assert not check_broker(settings, marker), "the marker is in place"
        with redis.Redis.from_url(redis_url) as client:
            client.flushdb()  # what FLUSHALL or an empty restart does to it
        assert check_broker(settings, marker)
    finally:
        marker.close()
    # Both the first look (a broker found without the marker) and the loss queued the three.
    assert shown_recoveries(settings).counts == {**NONE, "broker_lost": 2 * len(ids)}


def test_counts_cover_the_last_day_and_the_sweeper_prunes_old_ones(settings, pg_database_url):
    now = utcnow()
    with session_scope(pg_database_url) as session:
        record_recovery(session, now - timedelta(days=2), RecoveryCause.DEAD_WORKER, 7)
        record_recovery(session, now - timedelta(hours=1), RecoveryCause.DEAD_WORKER, 3)
        record_recovery(session, now, RecoveryCause.BROKER_LOST, 0)  # nothing: no row
        session.commit()
        summary = recovery_summary(session, now)
        assert summary.last_day == {**NONE, "dead_worker": 3}
        assert summary.last_at == now - timedelta(hours=1)
        forget_recoveries(session, now - timedelta(days=1))
        session.commit()
        assert [r.deliveries for r in session.scalars(select(Recovery))] == [3]
