"""What the broker does not take is kept, handed over once it answers, and never sent twice.

A real Redis of the test's own is the broker: stopped, a publish meets a refused connection,
as when the broker is down; started, it takes tasks again. Real PostgreSQL and SMTP.
"""

from __future__ import annotations

import base64
import json
import threading
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from notifier.celery_app import make_celery
from notifier.db import session_scope
from notifier.delivery.compose import Composer
from notifier.delivery.dispatch import deliver
from notifier.delivery.outlets import outlets
from notifier.delivery.queueing import queue_when_due
from notifier.delivery.unsent import NotHandedOver, forget_unsent, keep_unsent
from notifier.models import Article, Delivery, DeliveryStatus, UnsentTask
from notifier.ops.recoveries import recovery_summary
from notifier.recovery import hand_over_unsent
from notifier.tasks import enqueue_send, fan_out_article
from notifier.timeutil import utcnow
from tests import factories
from tests.conftest import make_settings
from tests.fault.harness import OwnRedis
from tests.support.ops_views import shown_unsent
from tests.support.queue import article_fanned_out

READERS = 5
CHUNK = 2  # small chunks, so five readers make three of them (the default is 1,000)


@pytest.fixture
def broker(tmp_path):
    """A Redis of our own as the broker, not started: publishing is refused until start()."""
    server = OwnRedis(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def settings(tmp_path, pg_database_url, broker, smtp):
    settings = make_settings(tmp_path, DATABASE_URL=pg_database_url, SMTP_URL=smtp.url,
                             CELERY_BROKER_URL=broker.url,
                             DELIVERY_CHUNK_SIZE=str(CHUNK))  # fmt: skip
    make_celery(settings)  # the current app: the tasks publish to our broker
    return settings


def _article(settings, readers: int = READERS) -> int:
    with session_scope(settings.database_url) as session:
        for n in range(readers):
            factories.subscriber(session, f"r{n}@example.com", "news")
        story = factories.article(session, "news")
        session.commit()
        return story.id


def _rows(settings, model, *where):
    with session_scope(settings.database_url) as session:
        return list(session.scalars(select(model).where(*where).order_by(model.id)))


def _queued_tasks(broker) -> list[tuple[str, list]]:
    """(task name, positional arguments) of every task waiting in the broker's queue."""
    with broker.client() as client:
        raw = client.lrange("celery", 0, -1)
    messages = [json.loads(item) for item in reversed(raw)]  # LPUSHed: oldest last
    return [(m["headers"]["task"], json.loads(base64.b64decode(m["body"]))[0]) for m in messages]


def test_a_fan_out_meeting_a_stopped_broker_keeps_every_chunk_and_finishes(settings, broker):
    article_id = _article(settings)
    assert fan_out_article(article_id) == {"email": READERS, "push": 0}

    kept = _rows(settings, UnsentTask)
    assert [(row.task_name, row.deliveries) for row in kept] == [
        ("notifier.tasks.send_deliveries", 2), ("notifier.tasks.send_deliveries", 2),
        ("notifier.tasks.send_deliveries", 1),
    ]  # fmt: skip
    assert all("Connection refused" in row.cause and row.handed_over_at is None for row in kept)
    deliveries = _rows(settings, Delivery)
    assert {row.queued_at for row in deliveries} == {None}, "not noted as with the broker"
    assert _rows(settings, Article)[0].fanned_out_at is not None, "planning finished"


def test_kept_tasks_wait_while_the_broker_is_away_and_go_once_it_answers(settings, broker):
    article_id = _article(settings)
    fan_out_article(article_id)
    assert hand_over_unsent(settings) == 0, "still away: nothing handed over, nothing lost"
    assert len(_rows(settings, UnsentTask, UnsentTask.handed_over_at.is_(None))) == 3

    broker.start()
    assert hand_over_unsent(settings) == 3
    assert hand_over_unsent(settings) == 0, "once"
    ids = [row.id for row in _rows(settings, Delivery)]
    queued = _queued_tasks(broker)
    assert [name for name, _ in queued] == ["notifier.tasks.send_deliveries"] * 3
    assert sorted(i for _, [chunk] in queued for i in chunk) == ids
    assert None not in {row.queued_at for row in _rows(settings, Delivery)}, "noted again"
    with session_scope(settings.database_url) as session:
        assert recovery_summary(session, utcnow()).last_day["broker_unreachable"] == READERS


def test_what_waits_for_the_broker_is_shown_and_makes_status_unhealthy(settings, broker):
    fan_out_article(_article(settings))
    broker.start()  # status reads the queues too; the kept tasks still wait for a worker
    shown = shown_unsent(settings)
    assert shown.report["waiting"] == 3 and shown.report["waiting_deliveries"] == READERS
    assert shown.report["kept_last_day"] == {"send_deliveries": 3}
    [problem] = [p for p in shown.problems if "the broker did not take" in p]
    assert problem.startswith("3 tasks the broker did not take (5 deliveries among them) have ")
    assert problem.endswith(": a worker hands them over as soon as it answers. Last cause: "
                            f"OperationalError: Error 111 connecting to 127.0.0.1:{broker.port}. "
                            "Connection refused.")  # fmt: skip
    assert shown.status_line == (
        "Not taken by the broker (last day): 3 tasks (send_deliveries 3), 3 waiting for it "
        "now (zero in normal operation)"
    )
    assert "3 waiting for it now (5 deliveries among them, since" in shown.ops
    assert "notifier_unsent_tasks_waiting 3.0" in shown.metrics

    hand_over_unsent(settings)
    shown = shown_unsent(settings)
    assert shown.report["waiting"] == 0
    assert not [p for p in shown.problems if "the broker did not take" in p]
    assert 'notifier_unsent_tasks_last_day{task="send_deliveries"} 3.0' in shown.metrics


def test_a_chunk_whose_publish_reached_the_broker_before_the_error_is_sent_once(
    settings, broker, smtp
):
    """The publish got through but its confirmation did not (the connection dropped after
    the write): the chunk is kept and handed over again, so the broker holds two tasks for
    the same rows. Both run at once; the claims let each reader have the article once."""
    broker.start()
    article_id = _article(settings, readers=CHUNK)

    def reached_then_failed(delivery_ids: list[int], countdown: float = 0.0) -> None:
        enqueue_send(delivery_ids, countdown)
        raise NotHandedOver("ConnectionResetError: the broker's confirmation was lost")

    from notifier.delivery.fanout import fan_out_article as plan_article

    with session_scope(settings.database_url) as session:
        plan_article(session, article_id, settings, reached_then_failed)
    assert hand_over_unsent(settings) == 1
    [(_, [first]), (_, [second])] = _queued_tasks(broker)
    assert first == second, "two tasks in the broker for the same chunk"

    bound = outlets(settings, Composer(settings))
    start = threading.Barrier(2)

    def run(ids: list[int]) -> None:
        with session_scope(settings.database_url) as session:
            start.wait()
            deliver(session, ids, bound, settings, enqueue_send)

    threads = [threading.Thread(target=run, args=(ids,)) for ids in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    recipients = sorted(r for m in smtp.handler.received for r in m.rcpt_tos)
    assert recipients == ["r0@example.com", "r1@example.com"]
    assert {row.status for row in _rows(settings, Delivery)} == {DeliveryStatus.SENT}


def test_a_paced_chunk_keeps_its_turn_when_handed_over(settings, broker):
    """A paced channel's later chunk was noted queued for when its turn comes; kept and
    handed over, it is noted for that turn again, not taken for lost by the sweeper."""
    paced = settings.with_overrides(email_rate_per_second=0.5)  # a chunk of 2 every 4 s
    make_celery(paced)
    article_id = _article(paced, readers=4)
    with session_scope(paced.database_url) as session:
        from notifier.delivery.fanout import fan_out_article as plan_article

        plan_article(session, article_id, paced, enqueue_send)
    first, second = _rows(paced, UnsentTask)
    assert second.turn_at - first.turn_at >= timedelta(seconds=3.5)
    broker.start()
    hand_over_unsent(paced)
    notes = {row.queued_at for row in _rows(paced, Delivery)}
    assert len(notes) == 2 and max(notes) > utcnow() + timedelta(seconds=2)


def test_a_retry_the_broker_refused_is_handed_over_for_its_own_time(settings, broker):
    """A batch's retry queued while the broker is down: handed over later, it still waits
    for the moment it was due (an ETA), neither sooner nor as if new."""
    article_id = _article(settings, readers=1)
    with session_scope(settings.database_url) as session:
        [delivery_id] = article_fanned_out(session, settings, article_id)[1]
        due = utcnow() + timedelta(seconds=60)
        queue_when_due(session, {delivery_id: due}, settings, enqueue_send)
    [kept] = _rows(settings, UnsentTask)
    assert abs((kept.run_at - due).total_seconds()) < 1

    broker.start()
    assert hand_over_unsent(settings) == 1
    with broker.client() as client:
        [message] = [json.loads(raw) for raw in client.lrange("celery", 0, -1)]
    eta = datetime.fromisoformat(message["headers"]["eta"])
    assert abs((eta - due).total_seconds()) < 2
    [row] = _rows(settings, Delivery)
    assert row.queued_at >= due - timedelta(seconds=1), "noted for when it runs"


def test_the_sweeper_forgets_tasks_handed_over_long_ago_never_waiting_ones(settings):
    now = utcnow()
    with session_scope(settings.database_url) as session:
        old = keep_unsent(session, "notifier.tasks.fan_out_article", [1], now - timedelta(days=30),
                          "refused")  # fmt: skip
        old.handed_over_at = now - timedelta(days=30)
        keep_unsent(session, "notifier.tasks.fan_out_article", [2], now - timedelta(days=30),
                    "refused")  # fmt: skip
        session.commit()
        forget_unsent(session, now - timedelta(days=14))
        session.commit()
    assert [row.arguments for row in _rows(settings, UnsentTask)] == ["[2]"]
