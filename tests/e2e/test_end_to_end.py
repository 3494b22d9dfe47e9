"""The whole loop over real HTTP, a real Celery worker and beat on Redis, real SMTP, PostgreSQL."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from datetime import UTC, datetime, timedelta

import requests
from sqlalchemy import select

from notifier.db import session_scope
from notifier.models import Article, Delivery, Feed, PushStatus, PushSubscription
from notifier.web import create_app
from tests import factories
from tests.conftest import make_settings
from tests.support.processes import celery_processes, wait_until, web_server
from tests.support.push_service import Reply
from tests.support.rss import Item, rss
from tests.support.smtp import free_port

READER = "reader@example.com"


def _link(message, prefix: str) -> str:
    text = message.get_body(preferencelist=("plain",)).get_content()
    return re.search(rf"{re.escape(prefix)}\S+", text).group(0)


def _article(url: str, guid: str) -> Article | None:
    with session_scope(url) as session:
        return session.scalar(select(Article).where(Article.guid == guid))


def live_settings(tmp_path, pg_database_url, redis_url, smtp, feed_server, **env):
    """Settings for a web server on a spare port and workers polling the test feed."""
    port = free_port()
    settings = make_settings(
        tmp_path,
        DATABASE_URL=pg_database_url,
        CELERY_BROKER_URL=redis_url,
        SMTP_URL=smtp.url,
        PUBLIC_URL=f"http://127.0.0.1:{port}",
        FEED_URLS=feed_server.url,
        # The tests change the feed and wait for the next poll: once a second, not every
        # five minutes. Everything else (sweeper, leases, retries) runs on its defaults.
        FEED_POLL_SECONDS="1",
        **env,
    )
    return settings, port


def test_subscribe_confirm_notify_unsubscribe(
    tmp_path, pg_database_url, redis_url, smtp, feed_server
):
    now = datetime.now(UTC)
    old = Item("https://aze.media/?p=1", "Old story", now - timedelta(days=400), ["News"])
    feed_server.body = rss(old)
    settings, port = live_settings(tmp_path, pg_database_url, redis_url, smtp, feed_server)
    mails = smtp.handler
    with web_server(create_app(settings), port) as base, celery_processes(settings, tmp_path):
        http = requests.Session()
        wanted = {"email": READER, "categories": ["news", "economy"]}
        answer = http.post(f"{base}/api/v1/subscriptions", json=wanted)
        assert answer.status_code == 202, answer.text

        confirmation = mails.wait_for(1)[0].message
        assert confirmation["To"] == READER
        confirm_link = _link(confirmation, f"{base}/confirm/")
        assert "Yes, subscribe me" in http.get(confirm_link).text
        confirmed = http.post(confirm_link)
        assert confirmed.status_code == 200 and "You are subscribed" in confirmed.text

        # The first poll is a baseline: the old article is stored, never announced.
        wait_until(lambda: _article(pg_database_url, old.guid) is not None, message="no poll")

        fresh = Item("https://aze.media/?p=2", "Fresh ə ğ ş ı story", datetime.now(UTC),
                     ["News", "Economy"])  # fmt: skip
        feed_server.body = rss(fresh, old)
        notification = mails.wait_for(2)[1].message
        assert notification["Subject"] == fresh.title
        assert notification["To"] == READER
        unsubscribe_url = notification["List-Unsubscribe"].strip("<>")
        assert unsubscribe_url.startswith(f"{base}/unsubscribe/")
        assert notification["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

        # An edit of the same post (same guid, new title and date) is not announced again.
        edited = Item(fresh.guid, "Fresh story, updated", datetime.now(UTC), ["News"])
        feed_server.body = rss(edited, old)
        wait_until(lambda: _article(pg_database_url, fresh.guid).title == edited.title)
        time.sleep(3)
        assert len(mails.received) == 2, "two categories matched, yet one email only"

        # One click: a POST with the RFC 8058 body, no cookie, no CSRF token.
        gone = requests.post(unsubscribe_url, data={"List-Unsubscribe": "One-Click"})
        assert gone.status_code == 200 and "You are unsubscribed" in gone.text

        later = Item("https://aze.media/?p=3", "Later story", datetime.now(UTC), ["News"])
        feed_server.body = rss(later, edited, old)
        wait_until(lambda: (a := _article(pg_database_url, later.guid)) and a.fanned_out_at)
        time.sleep(2)
        assert len(mails.received) == 2
        with session_scope(pg_database_url) as session:
            deliveries = session.scalars(select(Delivery)).all()
            assert [(d.status.value, d.attempts) for d in deliveries] == [("sent", 1)]
            feed = session.scalars(select(Feed)).one()
            assert feed.etag and feed.last_error is None
        assert any("If-None-Match" in headers for headers in feed_server.requests)


def test_push_through_the_api_and_a_real_worker(
    tmp_path, pg_database_url, redis_url, smtp, feed_server, push_service
):
    """Exactly one decrypted push per browser; 410 removes; 429 waits for Retry-After."""
    old = Item("https://aze.media/?p=1", "Old story", datetime.now(UTC) - timedelta(days=9))
    feed_server.body = rss(old)
    settings, port = live_settings(
        tmp_path, pg_database_url, redis_url, smtp, feed_server,
        PUSH_ALLOWED_ORIGINS=push_service.origin,
    )  # fmt: skip
    fine, dropped, throttled = (push_service.new_subscription() for _ in range(3))
    push_service.script(dropped, Reply(410))
    push_service.script(throttled, Reply(429, retry_after=2))
    with web_server(create_app(settings), port) as base, celery_processes(settings, tmp_path):
        for browser in (fine, dropped, throttled):
            body = {"subscription": browser.as_json(), "categories": ["news", "defense"]}
            answer = requests.post(f"{base}/api/v1/push/subscriptions", json=body)
            assert answer.status_code == 201, answer.text
        for endpoint in ("http://169.254.169.254/latest", "https://example.com/push"):
            body = {
                "subscription": {**fine.as_json(), "endpoint": endpoint},
                "categories": ["news"],
            }
            assert requests.post(f"{base}/api/v1/push/subscriptions", json=body).status_code == 400
        wait_until(lambda: _article(pg_database_url, old.guid) is not None, message="no poll")

        story = Item("https://aze.media/?p=7", "Ceasefire holds", datetime.now(UTC),
                     ["News", "Defense"])  # fmt: skip
        feed_server.body = rss(story, old)
        [push] = fine.wait_for(1, timeout=30)
        assert push.json()["title"] == "Ceasefire holds"
        assert push.json()["url"] == "https://aze.media/7"
        [late] = throttled.wait_for(1, timeout=30)
        refused = next(r for r in push_service.requests if r.status == 429)
        assert late.monotonic - refused.monotonic >= 2.0, "not before Retry-After"
        wait_until(lambda: _push_status(pg_database_url, dropped.endpoint) == PushStatus.GONE)

        second = Item("https://aze.media/?p=8", "Second story", datetime.now(UTC), ["News"])
        feed_server.body = rss(second, story, old)
        fine.wait_for(2, timeout=30)
        throttled.wait_for(2, timeout=30)
        time.sleep(1)
        assert (len(fine.received), len(throttled.received), len(dropped.received)) == (2, 2, 0)
        assert sum(1 for r in push_service.requests if "/" + dropped.endpoint.rsplit("/")[-1]
                   in r.path) == 1, "never sent to again"  # fmt: skip


def _csrf(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def _push_status(url: str, endpoint: str):
    with session_scope(url) as session:
        row = session.scalar(select(PushSubscription).where(PushSubscription.endpoint == endpoint))
        return row.status if row else None


def test_alerts_and_the_publish_webhook_through_a_real_worker(
    tmp_path, pg_database_url, redis_url, smtp, feed_server, push_service
):
    """An alert reaches its target on both channels and nobody else; progress matches the
    delivery records; a webhook article then seen in the feed is delivered once."""
    from notifier.db import session_scope as scope
    from notifier.domain.api_tokens import issue_token
    from notifier.domain.editors import create_editor
    from notifier.timeutil import utcnow

    feed_server.body = rss()
    settings, port = live_settings(
        tmp_path, pg_database_url, redis_url, smtp, feed_server,
        PUSH_ALLOWED_ORIGINS=push_service.origin, ALERT_SCHEDULER_SECONDS="1",
        WEBHOOK_SECRET="s3cret",
    )  # fmt: skip
    defense, other = push_service.new_subscription(), push_service.new_subscription()
    with scope(pg_database_url) as session:
        editor = create_editor(session, "editor@aze.media", "correct horse battery", "admin")
        session.flush()
        _, token = issue_token(session, "script", editor.id, utcnow())
        factories.subscriber(session, "defense@example.com", "defense")
        factories.subscriber(session, "culture@example.com", "culture")
        factories.push_subscription(session, defense, "defense")
        factories.push_subscription(session, other, "culture")
        session.commit()
    headers = {"Authorization": f"Bearer {token}"}
    with web_server(create_app(settings), port) as base, celery_processes(settings, tmp_path):
        body = {"title": "Ceasefire signed", "body": "At dawn.", "categories": ["defense"],
                "channels": ["email", "push"]}  # fmt: skip
        answer = requests.post(f"{base}/api/v1/alerts", json=body, headers=headers)
        assert answer.status_code == 202, answer.text
        alert_url = f"{base}/api/v1/alerts/{answer.json()['id']}"
        [push] = defense.wait_for(1, timeout=30)
        assert push.urgency == "high" and push.ttl == settings.push_alert_ttl_seconds
        [mail] = smtp.handler.wait_for(1)
        assert mail.rcpt_tos == ["defense@example.com"]
        assert mail.message["Subject"] == "Breaking: Ceasefire signed"
        wait_until(lambda: requests.get(alert_url, headers=headers).json()["status"] == "sent")
        status = requests.get(alert_url, headers=headers).json()
        assert status["progress"]["email"]["sent"] == status["progress"]["push"]["sent"] == 1
        assert other.received == [] and len(smtp.handler.received) == 1, "nobody else"

        post = {"guid": "https://aze.media/?p=77", "url": "https://aze.media/77/",
                "title": "Published just now", "categories": ["Culture"],
                "published_at": datetime.now(UTC).isoformat()}  # fmt: skip
        raw = json.dumps(post).encode()
        signature = hmac.new(b"s3cret", raw, hashlib.sha256).hexdigest()
        published = requests.post(
            f"{base}/api/v1/articles",
            data=raw,
            headers={
                "X-Notifier-Signature": f"sha256={signature}",
                "Content-Type": "application/json",
            },
        )
        assert published.status_code == 202, published.text
        other.wait_for(1, timeout=30)
        smtp.handler.wait_for(2)
        polls = len(feed_server.requests)
        feed_server.body = rss(Item(post["guid"], post["title"], datetime.now(UTC), ["Culture"]))
        wait_until(lambda: len(feed_server.requests) > polls + 1, message="feed not polled")
        # Two polls may be fetched at once (the feeds node runs several threads): wait for
        # the one that read the new body to record what it saw.
        wait_until(lambda: _article(pg_database_url, post["guid"]).feed_id is not None,
                   timeout=10, message="the feed never saw it")  # fmt: skip
        time.sleep(2)
        assert len(other.received) == 1 and len(smtp.handler.received) == 2, "once, not twice"

        # The editor's way: log in, compose, preview, confirm; it reaches culture readers.
        browser = requests.Session()
        login = browser.get(f"{base}/editor/login").text
        browser.post(f"{base}/editor/login", data={
            "email": "editor@aze.media", "password": "correct horse battery",
            "csrf_token": _csrf(login)})  # fmt: skip
        compose = browser.get(f"{base}/editor/alerts/new").text
        draft = {
            "title": "Museum reopens",
            "target": "categories",
            "categories": ["culture"],
            "channels": ["email", "push"],
            "when": "now",
            "csrf_token": _csrf(compose),
        }
        preview = browser.post(f"{base}/editor/alerts/preview", data=draft).text
        assert "Send now to 1 reader by email and 1 browser by push" in preview
        key = re.search(r'name="idempotency_key" value="([^"]+)"', preview).group(1)
        sent = browser.post(f"{base}/editor/alerts/", data={**draft, "idempotency_key": key})
        assert sent.status_code == 200 and "Museum reopens" in sent.text  # the alert's page
        other.wait_for(2, timeout=30)
        mails = smtp.handler.wait_for(3)
        assert mails[2].rcpt_tos == ["culture@example.com"]
        assert len(defense.received) == 1, "the defense reader is not in this alert's target"

        # Ops: the dashboard lists the running worker, online, from its own heartbeat.
        dashboard = browser.get(f"{base}/ops/").text
        assert re.search(r"e2e@\S+</td><td>online", dashboard), dashboard[:3000]
