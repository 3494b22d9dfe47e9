"""The whole loop over real HTTP, a real Celery worker and beat on Redis, real SMTP, PostgreSQL."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import requests
from sqlalchemy import select

from notifier.db import session_scope
from notifier.models import Article, Delivery, Feed
from notifier.web import create_app
from tests.conftest import make_settings
from tests.support.processes import celery_processes, wait_until, web_server
from tests.support.rss import Item, rss
from tests.support.smtp import free_port

READER = "reader@example.com"


def _link(message, prefix: str) -> str:
    text = message.get_body(preferencelist=("plain",)).get_content()
    return re.search(rf"{re.escape(prefix)}\S+", text).group(0)


def _article(url: str, guid: str) -> Article | None:
    with session_scope(url) as session:
        return session.scalar(select(Article).where(Article.guid == guid))


def test_subscribe_confirm_notify_unsubscribe(
    tmp_path, pg_database_url, redis_url, smtp, feed_server
):
    now = datetime.now(UTC)
    old = Item("https://aze.media/?p=1", "Old story", now - timedelta(days=400), ["News"])
    feed_server.body = rss(old)
    port = free_port()
    settings = make_settings(
        tmp_path,
        DATABASE_URL=pg_database_url,
        CELERY_BROKER_URL=redis_url,
        SMTP_URL=smtp.url,
        PUBLIC_URL=f"http://127.0.0.1:{port}",
        FEED_URLS=feed_server.url,
        FEED_POLL_SECONDS="1",
        SWEEP_SECONDS="2",
    )
    mails = smtp.handler
    with web_server(create_app(settings), port) as base, celery_processes(settings, tmp_path):
        http = requests.Session()
        wanted = {"email": READER, "categories": ["news", "economy"]}
        answer = http.post(f"{base}/api/v1/subscriptions", json=wanted)
        assert answer.status_code == 202, answer.text

        confirmation = mails.wait_for(1)[0].message
        assert confirmation["To"] == READER
        confirmed = http.get(_link(confirmation, f"{base}/confirm/"))
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
