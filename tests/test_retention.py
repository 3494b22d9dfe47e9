"""The retention job: which deliveries it removes and which it keeps, the summary it leaves,
batches, its time budget, a failure recorded with its cause, the beat task, and a fan-out
that never waits for it (PostgreSQL)."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

import pytest
import time_machine
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.orm import Session

from notifier import tasks
from notifier.celery_app import make_celery
from notifier.db import session_scope
from notifier.delivery.planning import Notice, plan_chunks
from notifier.domain.retention import remove_batch
from notifier.models import (
    Alert,
    AlertStatus,
    Article,
    Category,
    Delivery,
    DeliveryOutcome,
    DeliveryStatus,
    DeliverySummary,
    RetentionRun,
)
from notifier.retention import run_retention
from notifier.timeutil import utcnow
from tests import factories
from tests.conftest import make_settings

S, F, K, P = (DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.SKIPPED,
              DeliveryStatus.PENDING)  # fmt: skip
_readers = itertools.count(1)


def planned(session, at: datetime, readers: int, fanned_out: bool = True) -> int:
    """An article planned to `readers` email readers of its own category at `at`; its id."""
    slug = f"topic-{next(_readers)}"
    session.add(Category(slug=slug, name=slug))
    for _ in range(readers):
        factories.subscriber(session, f"kept{next(_readers)}@example.com", slug)
    story = factories.article(session, slug)
    list(plan_chunks(session, Notice.article(story.id), ["email"], at, 500))
    story.fanned_out_at = at if fanned_out else None
    session.commit()
    return story.id


def finish(session, article_id: int, *ends: tuple[DeliveryStatus, DeliveryOutcome | None]):
    """Give the article's rows these (status, outcome), in id order."""
    rows = session.scalars(select(Delivery).where(Delivery.article_id == article_id)
                           .order_by(Delivery.id)).all()  # fmt: skip
    for row, (status, outcome) in zip(rows, ends, strict=True):
        row.status, row.outcome = status, outcome
        row.sent_at = row.created_at + timedelta(minutes=1) if status is S else None
        row.last_error = "reader left" if status is K else None
    session.commit()


def remaining(session, article_id: int) -> list[tuple]:
    session.rollback()
    query = select(Delivery.status, Delivery.outcome).where(Delivery.article_id == article_id)
    rows = session.execute(query.order_by(Delivery.id))
    return [tuple(row) for row in rows]


def test_removes_finished_old_rows_and_keeps_what_must_stay(session, settings):
    now = utcnow()
    old = now - timedelta(days=settings.delivery_retention_days, hours=2)
    gone, bounced = DeliveryOutcome.GONE, DeliveryOutcome.BOUNCED
    story = planned(session, old, 6)
    finish(session, story, (S, DeliveryOutcome.SENT), (F, DeliveryOutcome.FAILED),
           (K, DeliveryOutcome.SKIPPED), (F, gone), (S, bounced), (P, None))  # fmt: skip
    young = planned(session, now - timedelta(days=1), 1)
    finish(session, young, (S, DeliveryOutcome.SENT))
    unfinished = planned(session, old, 1, fanned_out=False)  # its fan-out may run again
    finish(session, unfinished, (S, DeliveryOutcome.SENT))

    run = run_retention(settings)

    assert (run.removed, run.complete, run.error) == (3, True, None)
    # Bounce evidence (EMAIL_BOUNCE_LIMIT counts it) and the still-pending row stay.
    assert remaining(session, story) == [(F, gone), (S, bounced), (P, None)]
    assert remaining(session, young) == [(S, DeliveryOutcome.SENT)]
    assert remaining(session, unfinished) == [(S, DeliveryOutcome.SENT)]
    summary = session.execute(
        select(DeliverySummary.notice_kind, DeliverySummary.notice_id, DeliverySummary.channel,
               DeliverySummary.status, DeliverySummary.outcome, DeliverySummary.reason,
               DeliverySummary.created_hour, DeliverySummary.ended_hour, DeliverySummary.count)
        .order_by(DeliverySummary.status)
    ).all()  # fmt: skip
    hour = old.replace(minute=0, second=0, microsecond=0)
    sent_hour = (old + timedelta(minutes=1)).replace(minute=0, second=0, microsecond=0)
    assert [tuple(row) for row in summary] == [
        ("article", story, "email", "failed", "failed", "", hour, hour, 1),
        ("article", story, "email", "sent", "sent", "", hour, sent_hour, 1),
        ("article", story, "email", "skipped", "skipped", "reader left", hour, hour, 1),
    ]
    stored = session.scalar(select(RetentionRun))
    assert stored.removed == 3 and stored.finished_at is not None


def test_an_alert_still_being_planned_keeps_its_rows(session, settings):
    old = utcnow() - timedelta(days=settings.delivery_retention_days + 1)
    reader = factories.subscriber(session, "alerted@example.com", "news")
    alert = Alert(title="Breaking", url="https://aze.media/", target_all=True,
                  status=AlertStatus.SENDING, created_at=old, started_at=old)  # fmt: skip
    session.add(alert)
    session.flush()
    session.add(Delivery(alert_id=alert.id, subscriber_id=reader.id, channel="email", status=S,
                         outcome=DeliveryOutcome.SENT, created_at=old, next_attempt_at=old,
                         sent_at=old))  # fmt: skip
    session.commit()
    assert run_retention(settings).removed == 0
    alert.fanned_out_at = old
    session.commit()
    assert run_retention(settings).removed == 1


def test_many_batches_count_each_row_once(session, tmp_path, database_url):
    # Batches of 3 (the default is 5,000) so a few rows take several batches.
    settings = make_settings(tmp_path, DATABASE_URL=database_url, RETENTION_BATCH_SIZE="3")
    old = utcnow() - timedelta(days=settings.delivery_retention_days + 1)
    story = planned(session, old, 10)
    finish(session, story, *[(S, DeliveryOutcome.SENT)] * 10)
    pauses: list[float] = []
    run = run_retention(settings, sleep=pauses.append)
    assert (run.removed, run.batches, run.complete) == (10, 4, True)
    assert pauses == [settings.retention_batch_pause_seconds] * 3  # between batches
    [(count,)] = session.execute(select(DeliverySummary.count)).all()
    assert count == 10, "one summary row, added to by every batch"


def test_a_run_stops_when_its_time_is_up_and_the_next_goes_on(session, tmp_path, database_url):
    # Batches of 2, so the run is still going when its time is up.
    settings = make_settings(tmp_path, DATABASE_URL=database_url, RETENTION_BATCH_SIZE="2")
    old = utcnow() - timedelta(days=settings.delivery_retention_days + 1)
    story = planned(session, old, 5)
    finish(session, story, *[(S, DeliveryOutcome.SENT)] * 5)
    ticks = iter([0.0, settings.retention_run_seconds + 1.0])  # start, after the first batch
    first = run_retention(settings, sleep=lambda _: None, clock=lambda: next(ticks))
    assert (first.removed, first.complete) == (2, False)
    second = run_retention(settings, sleep=lambda _: None)
    assert (second.removed, second.complete) == (3, True)
    assert remaining(session, story) == []


def test_a_failed_run_is_recorded_with_its_cause(session, tmp_path, database_url):
    settings = make_settings(tmp_path, DATABASE_URL=database_url, RETENTION_BATCH_SIZE="1")
    old = utcnow() - timedelta(days=settings.delivery_retention_days + 1)
    story = planned(session, old, 2)
    finish(session, story, *[(S, DeliveryOutcome.SENT)] * 2)

    def broken_pause(_seconds: float) -> None:
        raise OSError("the pause broke")

    with pytest.raises(OSError):
        run_retention(settings, sleep=broken_pause)
    session.rollback()
    run = session.scalar(select(RetentionRun))
    assert run.error == "OSError: the pause broke" and run.finished_at is not None
    assert run.removed == 1, "the committed batch stays removed and counted"
    assert session.scalar(select(func.sum(DeliverySummary.count))) == 1


def test_the_beat_task_runs_it(tmp_path, pg_database_url):
    settings = make_settings(tmp_path, DATABASE_URL=pg_database_url)
    app = make_celery(settings)
    beat = app.conf.beat_schedule["retain-deliveries"]
    assert beat["task"] == tasks.retain_deliveries.name
    assert beat["schedule"] == timedelta(seconds=settings.retention_seconds)
    with session_scope(settings.database_url) as session:
        story = planned(session, utcnow(), 2)
        finish(session, story, *[(S, DeliveryOutcome.SENT)] * 2)
    later = utcnow() + timedelta(days=settings.delivery_retention_days, minutes=1)
    with time_machine.travel(later):
        assert tasks.retain_deliveries.apply().get() == {
            "removed": 2, "batches": 1, "complete": True,
        }  # fmt: skip


def test_a_fan_out_never_waits_for_a_retention_batch(pg_database_url, tmp_path):
    """A batch holds its transaction open (as if slow); a fan-out planning a new article
    meanwhile must not wait on it: lock_timeout turns any wait into an error."""
    settings = make_settings(tmp_path, DATABASE_URL=pg_database_url)
    engine = create_engine(pg_database_url)
    old = utcnow() - timedelta(days=settings.delivery_retention_days + 1)
    with Session(engine) as setup:
        story = planned(setup, old, 50)
        finish(setup, story, *[(S, DeliveryOutcome.SENT)] * 50)
        fresh = factories.article(setup, setup.get_one(Article, story).categories[0].slug)
        setup.commit()
        fresh_id = fresh.id
    with Session(engine) as retention, Session(engine) as fan_out:
        batch = remove_batch(
            retention, utcnow() - timedelta(days=30), settings.retention_batch_size
        )
        assert batch.removed == 50  # deleted, not yet committed: its row locks are held
        fan_out.execute(text("SET LOCAL lock_timeout = '2s'"))
        chunks = list(plan_chunks(fan_out, Notice.article(fresh_id), ["email"], utcnow(), 500))
        fan_out.commit()
        assert sum(c.planned for c in chunks) == 50
        retention.commit()
    engine.dispose()


def test_a_retention_shorter_than_three_days_is_refused_with_a_sentence(tmp_path):
    from notifier.config import ConfigError

    with pytest.raises(ConfigError, match="DELIVERY_RETENTION_DAYS must be at least 3, got 2"):
        make_settings(tmp_path, DELIVERY_RETENTION_DAYS="2")
    assert make_settings(tmp_path, DELIVERY_RETENTION_DAYS="3").delivery_retention_days == 3


def test_a_run_waits_while_messages_go_out_then_removes(session, settings):
    """News first: a fan-out in progress (a due row) holds retention back; once it is sent,
    the same run removes what is old."""
    old = utcnow() - timedelta(days=settings.delivery_retention_days + 1)
    story = planned(session, old, 2)
    finish(session, story, *[(S, DeliveryOutcome.SENT)] * 2)
    fresh = planned(session, utcnow(), 1)  # due now: being sent
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        assert remaining(session, story) != [], "nothing removed while messages go out"
        if len(waits) == 3:  # the fan-out ends
            finish(session, fresh, (S, DeliveryOutcome.SENT))

    run = run_retention(settings, sleep=sleep)
    assert waits[:3] == [settings.retention_busy_check_seconds] * 3
    assert (run.removed, run.complete) == (2, True)
    assert remaining(session, story) == []


def test_a_row_stuck_as_due_cannot_starve_retention(session, settings):
    old = utcnow() - timedelta(days=settings.delivery_retention_days + 1)
    story = planned(session, old, 2)
    finish(session, story, *[(S, DeliveryOutcome.SENT)] * 2)
    planned(session, utcnow(), 1)  # due, and nobody sends it
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    run = run_retention(settings, sleep=sleep, clock=lambda: now[0])
    assert now[0] >= settings.retention_yield_seconds, "it waited its yield time"
    assert now[0] < settings.retention_run_seconds
    assert (run.removed, run.complete) == (2, True)
