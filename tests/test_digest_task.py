"""The beat's digest task as Celery runs it: it plans what is due, commits, hands the digests'
deliveries to the real broker, and a second firing finds nothing left to plan."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import redis
from sqlalchemy import func, select

from notifier import tasks
from notifier.celery_app import make_celery
from notifier.db import session_scope
from notifier.domain.cadence import set_email_cadences
from notifier.models import Delivery, Digest, DigestSchedule
from notifier.timeutil import utcnow
from tests import factories
from tests.conftest import make_settings


def test_the_beat_task_plans_a_due_digest_once_and_queues_it(tmp_path, pg_database_url,
                                                             redis_url):  # fmt: skip
    settings = make_settings(tmp_path, DATABASE_URL=pg_database_url, CELERY_BROKER_URL=redis_url)
    app = make_celery(settings)
    now = utcnow()
    with session_scope(settings.database_url) as session:
        reader = factories.subscriber(session, "beat@example.com", "economy")
        set_email_cadences(session, reader.id, {"economy": "daily"}, now - timedelta(days=1))
        schedule = session.get_one(DigestSchedule, (reader.id, "daily"))
        schedule.next_at = now - timedelta(minutes=1)  # the reader's hour just passed
        story = factories.article(session, "economy")
        story.first_seen_at = now - timedelta(hours=1)
        session.commit()

    beat = app.conf.beat_schedule["plan-digests"]
    assert beat["task"] == tasks.plan_digests.name
    assert beat["schedule"] == timedelta(seconds=settings.digest_planner_seconds)
    assert tasks.plan_digests.apply().get() == 1
    assert tasks.plan_digests.apply().get() == 0  # the beat firing again

    with session_scope(settings.database_url) as session:
        digest = session.scalar(select(Digest))
        assert json.loads(digest.article_ids) == [story.id]
        delivery = session.scalar(select(Delivery).where(Delivery.digest_id == digest.id))
        assert delivery.queued_at is not None  # noted with the broker
        assert session.scalar(select(func.count()).select_from(Digest)) == 1
    client = redis.Redis.from_url(redis_url)
    messages = [json.loads(m) for m in client.lrange("celery", 0, -1)]
    client.close()
    sent = [m["headers"]["task"] for m in messages]
    assert sent == ["notifier.tasks.send_deliveries"]
    args = json.loads(base64.b64decode(messages[0]["body"]))[0]
    assert args == [[delivery.id]]


def test_with_more_due_than_a_batch_the_beat_task_starts_a_helper_planner(tmp_path,
                                                                          pg_database_url,
                                                                          redis_url):  # fmt: skip
    # A batch of 1 schedule (not the default 500) so three readers are more than a batch.
    settings = make_settings(tmp_path, DATABASE_URL=pg_database_url, CELERY_BROKER_URL=redis_url,
                             DIGEST_PLAN_BATCH="1")  # fmt: skip
    make_celery(settings)  # the tasks' app, bound to these settings and this broker
    now = utcnow()
    with session_scope(settings.database_url) as session:
        for n in range(3):
            reader = factories.subscriber(session, f"morning{n}@example.com", "economy")
            set_email_cadences(session, reader.id, {"economy": "daily"}, now - timedelta(days=1))
            session.get_one(DigestSchedule, (reader.id, "daily")).next_at = now
        factories.article(session, "economy").first_seen_at = now - timedelta(hours=1)
        session.commit()

    assert tasks.plan_digests.apply().get() == 3  # it went on while the helper was queued
    client = redis.Redis.from_url(redis_url)
    messages = [json.loads(m) for m in reversed(client.lrange("celery", 0, -1))]
    client.close()
    sent = [(m["headers"]["task"], json.loads(base64.b64decode(m["body"]))[0]) for m in messages]
    helpers = [args for task, args in sent if task == tasks.plan_digests.name]
    assert helpers == [[True]] * (settings.digest_planners - 1)
    assert len([task for task, _ in sent if task == tasks.send_deliveries.name]) == 3
    assert tasks.plan_digests.apply(args=(True,)).get() == 0  # the helper finds nothing left
    with session_scope(settings.database_url) as session:
        assert session.scalar(select(func.count()).select_from(Digest)) == 3
