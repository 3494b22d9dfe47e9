"""The ops dashboard: who is alive, what is failing, and the buttons that fix it."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from notifier.delivery.planning import Notice, plan_chunks
from notifier.domain.editors import create_editor
from notifier.models import (
    Delivery,
    DeliveryOutcome,
    DeliveryStatus,
    Feed,
    UnsentTask,
    WorkerHeartbeat,
)
from notifier.timeutil import utcnow
from tests import factories
from tests.ops.test_delivery_chart import outcomes
from tests.web.conftest import logged_in_client


@pytest.fixture
def admin_client(app, session):
    admin = create_editor(session, "admin@aze.media", "correct horse battery", "admin")
    session.commit()
    return logged_in_client(app, admin)


def csrf(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def failed_deliveries(
    session, count: int, error: str, outcome: DeliveryOutcome = DeliveryOutcome.FAILED
) -> list[int]:
    for n in range(count):
        factories.subscriber(session, f"r{n}@example.com", "news")
    story = factories.article(session, "news")
    list(plan_chunks(session, Notice.article(story.id), ["email"], utcnow(), 100))
    rows = session.scalars(select(Delivery)).all()
    for row in rows:
        row.status, row.last_error, row.attempts = DeliveryStatus.FAILED, error, 8
        row.outcome = outcome
    session.commit()
    return [row.id for row in rows]


def test_only_admins_see_it(editor_client, client):
    assert editor_client.get("/ops/").status_code == 403
    assert client.get("/ops/").status_code in (302, 303)


def test_lists_workers_feeds_and_failures_grouped_by_cause(admin_client, session):
    now = utcnow()
    session.add_all([
        WorkerHeartbeat(hostname="celery@alive", seen_at=now, started_at=now, concurrency=2,
                        active_tasks=1, pid=1),
        WorkerHeartbeat(hostname="celery@dead", seen_at=now - timedelta(minutes=5),
                        started_at=now, concurrency=2, active_tasks=0, pid=2),
        Feed(url="https://aze.media/feed/", added_at=now, last_error="HTTP 500 from feed"),
    ])  # fmt: skip
    session.commit()
    failed_deliveries(session, 3, "gone: SMTP 550 5.1.1 <r@example.com> No such user",
                      DeliveryOutcome.GONE)  # fmt: skip
    page = admin_client.get("/ops/").text
    assert "celery@alive</td><td>online" in page and "celery@dead</td><td>OFFLINE" in page
    assert "HTTP 500 from feed" in page
    assert "gone: SMTP 550 5.1.1 &lt;address&gt; No such user</td><td>3</td>" in page
    assert "r@example.com" not in page, "causes never show addresses"


def test_poll_now_queues_the_feed(admin_client, session, queue):
    feed = Feed(url="https://aze.media/feed/", added_at=utcnow())
    session.add(feed)
    session.commit()
    page = admin_client.get("/ops/").text
    answer = admin_client.post(f"/ops/feeds/{feed.id}/poll", data={"csrf_token": csrf(page)})
    assert answer.status_code == 303
    assert queue.polled == [feed.id]


def test_retry_all_of_a_cause_requeues_them_once(admin_client, session, queue):
    ids = failed_deliveries(session, 3, "failed: HTTP 403 from https://fcm.googleapis.com")
    page = admin_client.get("/ops/").text
    admin_client.post("/ops/failures/retry", data={
        "csrf_token": csrf(page), "channel": "email",
        "cause": "failed: HTTP 403 from https://fcm.googleapis.com"})  # fmt: skip
    session.expire_all()
    rows = session.scalars(select(Delivery)).all()
    assert {(r.status, r.attempts) for r in rows} == {(DeliveryStatus.PENDING, 0)}
    assert sorted(i for chunk in queue.sent for i in chunk) == sorted(ids)
    admin_client.post("/ops/failures/retry", data={
        "csrf_token": csrf(page), "channel": "email",
        "cause": "failed: HTTP 403 from https://fcm.googleapis.com"})  # fmt: skip
    assert sum(len(chunk) for chunk in queue.sent) == 3, "pending ones are not retried again"


def test_a_retry_the_broker_does_not_take_is_kept_not_lost(admin_client, session, queue):
    ids = failed_deliveries(session, 2, "failed: HTTP 403 from https://fcm.googleapis.com")
    queue.broker_down = True
    page = admin_client.get("/ops/").text
    admin_client.post("/ops/failures/retry", data={
        "csrf_token": csrf(page), "channel": "email",
        "cause": "failed: HTTP 403 from https://fcm.googleapis.com"})  # fmt: skip
    session.expire_all()
    [kept] = session.scalars(select(UnsentTask)).all()
    assert (kept.task_name, kept.deliveries) == ("notifier.tasks.send_deliveries", 2)
    assert sorted(json.loads(kept.arguments)[0]) == sorted(ids)
    rows = session.scalars(select(Delivery)).all()
    assert {(r.status, r.queued_at) for r in rows} == {(DeliveryStatus.PENDING, None)}
    page = admin_client.get("/ops/").text
    assert "1 waiting for it now (2 deliveries among them" in page


def test_retry_needs_csrf(admin_client, session):
    failed_deliveries(session, 1, "failed: HTTP 400")
    answer = admin_client.post(
        "/ops/failures/retry", data={"channel": "email", "cause": "failed: HTTP 400"}
    )
    assert answer.status_code == 400


def test_the_delivery_chart_is_an_svg_with_a_text_alternative_and_the_figures(app, session):
    now = utcnow()
    outcomes(session, (DeliveryStatus.SENT, now), (DeliveryStatus.SENT, now),
              (DeliveryStatus.FAILED, now))  # fmt: skip
    admin = create_editor(session, "admin@aze.media", "correct horse battery", "admin")
    session.commit()
    page = logged_in_client(app, admin).get("/ops/").text
    svg = re.search(r'<svg class="delivery-chart".*?</svg>', page, re.S).group(0)
    assert 'role="img"' in svg and 'aria-labelledby="chart-title chart-desc"' in svg
    assert "2 deliveries sent and 1 failed in the last 24 hours" in svg
    assert svg.count('class="sent"') == 1 and svg.count('class="failed"') == 1
    assert "style=" not in svg and "<script" not in svg
    hourly = re.search(r'<table class="ops" id="hourly">.*?</table>', page, re.S).group(0)
    assert hourly.count("<tr>") == 25  # a header and 24 hours
    first = hourly.split("</tr>")[1]  # the newest hour first
    assert '"sent">2</td>' in first and '"failed">1</td>' in first
    assert "<title>Operations · " in page, "nothing but the title in the tab"
