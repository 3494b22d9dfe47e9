""" "Never twice" across retention: an article (from the feed) and an alert go out by email
and push for real (SMTP test server, fake push service), retention removes their rows a month
later, and then each path that could plan or send them again runs for real: the sweeper, the
fan-out tasks (the planner), the feed poller, the publish webhook and the ops retry. Nothing
reaches the broker, and the SMTP server and the push service receive nothing new."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
import redis
import time_machine
from sqlalchemy import func, select

from notifier import tasks
from notifier.celery_app import make_celery
from notifier.delivery.compose import Composer
from notifier.delivery.dispatch import send_deliveries
from notifier.delivery.outlets import outlets
from notifier.domain.feeds import sync_feeds
from notifier.models import Alert, AlertStatus, Article, Delivery, Feed
from notifier.ops.failures import recent_failures
from notifier.polling.fetch import fetch, finish_poll, start_poll
from notifier.retention import run_retention
from notifier.timeutil import utcnow
from notifier.web import create_app
from tests import factories
from tests.support.push_service import Reply
from tests.support.queue import alert_fanned_out, article_fanned_out
from tests.support.rss import Item, rss
from tests.web.test_alerts_api import signed

GUID = "https://aze.media/?p=4242"


@dataclass
class Sent:
    settings: object
    article_id: int
    alert_id: int
    feed_id: int
    failed_ids: list[int]  # push deliveries that failed (the ops retry's subject)
    failed_cause: str  # as /ops/ groups them
    emails: int  # what the SMTP server had received when retention ran
    pushes: int  # what the push service had received


def _deliver(session, settings, ids) -> None:
    send_deliveries(session, ids, outlets(settings, Composer(settings)), settings)


def _poll(session, settings, feed_id) -> list[int]:
    """What the poll_feed task does, without handing the fan-outs to a broker."""
    request = start_poll(session, feed_id, utcnow())
    session.commit()
    ids = finish_poll(session, feed_id, fetch(request, settings), utcnow(),
                      settings.category_grace_seconds)  # fmt: skip
    session.commit()
    return ids


@pytest.fixture
def sent(session, settings, smtp, push_service, feed_server, redis_url) -> Iterator[Sent]:
    """Three email readers and two browsers of News; the feed's article and an alert to all
    go out (one browser refuses both pushes with a 400: failed), then a month passes and
    retention removes every row. The rest of the test runs a month later."""
    settings = settings.with_overrides(broker_url=redis_url)
    make_celery(settings)  # the tasks below run on this app: its broker is our Redis db
    for n in range(3):
        factories.subscriber(session, f"reader{n}@example.com", "news")
    browsers = [push_service.new_subscription() for _ in range(2)]
    for browser in browsers:
        factories.push_subscription(session, browser, "news")
    push_service.script(browsers[1], Reply(400), Reply(400))
    feed = sync_feeds(session, [feed_server.url], utcnow() - timedelta(days=1))[0]
    session.commit()
    feed_server.body = rss(Item(GUID, "Manat holds steady", utcnow(), ["News"]))
    [article_id] = _poll(session, settings, feed.id)
    _deliver(session, settings, article_fanned_out(session, settings, article_id)[1])
    alert = Alert(title="Breaking", url="https://aze.media/", target_all=True,
                  status=AlertStatus.QUEUED)  # fmt: skip
    session.add(alert)
    session.commit()
    _deliver(session, settings, alert_fanned_out(session, settings, alert.id)[1])
    [group] = recent_failures(session, utcnow())
    assert (len(smtp.handler.received), len(push_service.all_received), group.count) == (6, 2, 2)
    session.commit()

    later = utcnow() + timedelta(days=settings.delivery_retention_days, hours=1)
    with time_machine.travel(later):
        assert run_retention(settings).removed == 10
        assert session.scalar(select(func.count()).select_from(Delivery)) == 0
        yield Sent(settings, article_id, alert.id, feed.id, list(group.delivery_ids), group.cause,
                   6, 2)  # fmt: skip


def nothing_went_out(session, sent: Sent, smtp, push_service, redis_url) -> None:
    """No task reached the broker, no delivery row is owed, and sending whatever is owed
    reaches nobody: the SMTP server and the push service have nothing new."""
    client = redis.Redis.from_url(redis_url)
    queued = [json.loads(m)["headers"]["task"] for m in client.lrange("celery", 0, -1)]
    client.close()
    assert queued == []
    session.rollback()
    owed = list(session.scalars(select(Delivery.id)))
    assert owed == []
    _deliver(session, sent.settings, owed)
    assert (len(smtp.handler.received), len(push_service.all_received)) == (
        sent.emails,
        sent.pushes,
    )


def test_the_sweeper(session, sent, smtp, push_service, redis_url):
    counts = tasks.sweep.apply().get()
    assert counts == {"articles": 0, "alerts": 0, "deliveries": 0}
    nothing_went_out(session, sent, smtp, push_service, redis_url)


def test_the_fan_out_tasks_run_again(session, sent, smtp, push_service, redis_url):
    """A fan-out task delivered again (or sent by hand) for a notice planned long ago."""
    assert tasks.fan_out_article.apply(args=(sent.article_id,)).get() == {}
    assert tasks.fan_out_alert.apply(args=(sent.alert_id,)).get() == {}
    assert article_fanned_out(session, sent.settings, sent.article_id) == ({}, [])
    nothing_went_out(session, sent, smtp, push_service, redis_url)


def test_the_feed_poller(session, sent, smtp, push_service, redis_url, feed_server):
    """The same post, edited (a new title and category), comes back in the feed."""
    feed_server.body = rss(Item(GUID, "Manat holds steady, edited", utcnow(), ["News", "Economy"]))
    assert tasks.poll_feed.apply(args=(sent.feed_id,)).get() == []
    session.rollback()
    assert session.get_one(Article, sent.article_id).title == "Manat holds steady, edited"
    assert session.get_one(Feed, sent.feed_id).last_error is None
    nothing_went_out(session, sent, smtp, push_service, redis_url)


def test_the_publish_webhook(session, sent, smtp, push_service, redis_url):
    """WordPress announces the same post again (a re-publish, a plugin retry)."""
    app = create_app(sent.settings.with_overrides(webhook_secret="s3cret"))
    body = {"guid": GUID, "url": "https://aze.media/4242", "title": "Manat holds steady",
            "categories": ["News"], "published_at": utcnow().isoformat()}  # fmt: skip
    raw, headers = signed("s3cret", body)
    answer = app.test_client().post("/api/v1/articles", data=raw, headers=headers)
    assert answer.status_code == 200, answer.text  # known: not announced again
    nothing_went_out(session, sent, smtp, push_service, redis_url)


def test_the_ops_retry(session, sent, smtp, push_service, redis_url):
    """An admin retries the failed pushes whose rows are gone: one by id, and by cause."""
    from notifier.domain.editors import create_editor
    from tests.web.conftest import logged_in_client
    from tests.web.test_ops_dashboard import csrf

    admin = create_editor(session, "admin@aze.media", "correct horse battery", "admin")
    session.commit()
    client = logged_in_client(create_app(sent.settings), admin)
    token = csrf(client.get("/ops/").text)
    for delivery_id in sent.failed_ids:
        data = {"csrf_token": token, "delivery_id": str(delivery_id)}
        answer = client.post("/ops/failures/retry", data=data)
        assert answer.status_code == 303 and "Retrying+0+deliveries" in answer.location
    data = {"csrf_token": token, "channel": "push", "cause": sent.failed_cause}
    answer = client.post("/ops/failures/retry", data=data)
    assert answer.status_code == 303 and "Retrying+0+deliveries" in answer.location
    nothing_went_out(session, sent, smtp, push_service, redis_url)
