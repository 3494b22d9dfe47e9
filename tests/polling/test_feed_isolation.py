"""Feeds cannot hold up sending: feed fetches run on their own queue and node, and
FEED_TIMEOUT_SECONDS bounds the whole fetch, so a feed that drips one byte at a time shows as
failing while webhook articles and other feeds keep going."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
import requests
from click.testing import CliRunner
from sqlalchemy import select

from notifier.celery_app import make_celery
from notifier.cli import cli
from notifier.db import session_scope
from notifier.domain.editors import create_editor
from notifier.domain.feeds import sync_feeds
from notifier.models import Feed
from notifier.polling.fetch import FeedFetchError, FeedRequest, fetch
from notifier.web import create_app
from tests import factories
from tests.conftest import make_settings
from tests.support.feed_server import FeedServer
from tests.support.processes import Process, settings_env, wait_until, web_server
from tests.support.rss import Item, rss
from tests.support.smtp import free_port
from tests.web.conftest import logged_in_client

SLOW_FEEDS = 4  # as many as WORKER_CONCURRENCY's default: together they once held every slot


@pytest.fixture
def slow_feed():
    server = FeedServer(drip_seconds=5).start()  # the slow feed: a byte every 5 s
    server.body = rss(Item("https://aze.media/?p=500", "Never complete", datetime.now(UTC)))
    yield server
    server.stop()


def _feeds(url: str) -> dict[str, Feed]:
    with session_scope(url) as session:
        return {feed.url: feed for feed in session.scalars(select(Feed))}


def test_a_slow_feed_holds_up_neither_articles_nor_other_feeds(
    tmp_path, pg_database_url, redis_url, smtp, feed_server, slow_feed
):
    """Default settings (FEED_TIMEOUT_SECONDS 20, WORKER_CONCURRENCY 4, FEED_CONCURRENCY 8),
    one `notifier worker`. While four slow feeds are being fetched, a webhook article and an
    article of a healthy feed reach their reader; the slow feeds then show as failing with
    their error in `notifier status`, /ops/ and /metrics."""
    slow_urls = [f"{slow_feed.url}?n={n}" for n in range(SLOW_FEEDS)]
    port = free_port()
    settings = make_settings(
        tmp_path, DATABASE_URL=pg_database_url, CELERY_BROKER_URL=redis_url, SMTP_URL=smtp.url,
        PUBLIC_URL=f"http://127.0.0.1:{port}", WEBHOOK_SECRET="s3cret",
        FEED_URLS=",".join([*slow_urls, feed_server.url]),
    )  # fmt: skip
    with session_scope(pg_database_url) as session:
        factories.subscriber(session, "reader@example.com", "news")
        sync_feeds(session, settings.feed_urls, datetime.now(UTC) - timedelta(hours=1))
        admin = create_editor(session, "admin@aze.media", "correct horse battery", "admin")
        session.commit()
    feed_server.body = rss(Item("https://aze.media/?p=600", "From the healthy feed",
                                datetime.now(UTC)))  # fmt: skip
    app = create_app(settings)
    worker = Process("worker", ["worker", "-n", "isolation@%h"], settings_env(settings), tmp_path)
    try:
        worker.wait_for_output("isolation@", timeout=60)
        wait_until(lambda: "ready." in worker.output() and worker.output().count("ready.") >= 2,
                   timeout=60, message=worker.output())  # fmt: skip
        celery = make_celery(settings)
        celery.send_task("notifier.tasks.poll_feeds")  # what beat sends every FEED_POLL_SECONDS
        wait_until(lambda: slow_feed.in_progress == SLOW_FEEDS, timeout=30,
                   message="the slow feeds were not all being fetched")  # fmt: skip

        with web_server(app, port) as base:
            post = {"guid": "https://aze.media/?p=700", "url": "https://aze.media/700/",
                    "title": "Breaking, via the webhook", "categories": ["News"],
                    "published_at": datetime.now(UTC).isoformat()}  # fmt: skip
            raw = json.dumps(post).encode()
            signature = hmac.new(b"s3cret", raw, hashlib.sha256).hexdigest()
            headers = {"X-Notifier-Signature": f"sha256={signature}",
                       "Content-Type": "application/json"}  # fmt: skip
            answer = requests.post(f"{base}/api/v1/articles", data=raw, headers=headers)
            assert answer.status_code == 202, answer.text
            # Well inside FEED_TIMEOUT_SECONDS: it cannot have waited for a slow fetch to end.
            received = smtp.handler.wait_for(2, timeout=10)
        assert slow_feed.in_progress == SLOW_FEEDS, "the slow feeds were still being fetched"
        assert {r.message["Subject"] for r in received} == {
            "Breaking, via the webhook", "From the healthy feed"}  # fmt: skip

        def slow_ones_failed() -> bool:
            feeds = _feeds(pg_database_url)
            return all(feeds[url].last_error for url in slow_urls)

        wait_until(slow_ones_failed, timeout=settings.feed_timeout_seconds + 20,
                   message="the slow feeds never showed as failing")  # fmt: skip
        feeds = _feeds(pg_database_url)
        error = f"{slow_urls[0]} was not fetched in full within FEED_TIMEOUT_SECONDS (20s)"
        assert feeds[slow_urls[0]].last_error == error
        assert feeds[feed_server.url].last_error is None

        result = CliRunner().invoke(cli, ["status", "--json"], env=settings_env(settings))
        report = json.loads(result.output)
        assert result.exit_code == 1
        by_url = {feed["url"]: feed for feed in report["feeds"]}
        assert by_url[slow_urls[0]]["healthy"] is False
        assert by_url[slow_urls[0]]["last_error"] == error
        assert by_url[feed_server.url]["healthy"] is True
        assert f"Feed {slow_urls[0]} is unhealthy: last poll failed: {error}." in report["problems"]
        assert {w["hostname"].partition("@")[0] for w in report["workers"]} == {
            "isolation", "feeds-isolation"}  # fmt: skip

        client = logged_in_client(app, admin)
        assert error in client.get("/ops/").text
        metrics = client.get("/metrics").text
        assert f'notifier_feed_error{{feed="{slow_urls[0]}"}} 1.0' in metrics
        assert f'notifier_feed_error{{feed="{feed_server.url}"}} 0.0' in metrics
    except BaseException:
        print(f"----- worker log -----\n{worker.output()[-8000:]}")
        raise
    finally:
        worker.stop(timeout=60)


def _request(server: FeedServer) -> FeedRequest:
    return FeedRequest(server.url, None, None)


def test_the_timeout_bounds_the_whole_fetch_not_each_read(tmp_path, feed_server):
    # A byte every 0.2 s: no read ever waits 1 s, yet the whole body takes 6 s. The timeout
    # is shrunk to 1 s so the test is quick; a per-read timeout would never trip here.
    feed_server.drip_seconds = 0.2
    feed_server.body = b"x" * 30
    settings = make_settings(tmp_path, FEED_TIMEOUT_SECONDS="1")
    with pytest.raises(FeedFetchError, match=r"within FEED_TIMEOUT_SECONDS \(1s\)"):
        fetch(_request(feed_server), settings)


def test_too_large_and_failing_feeds_are_errors_with_a_sentence(tmp_path, feed_server):
    settings = make_settings(tmp_path)
    feed_server.body = b"x" * (settings.feed_max_bytes + 1)  # the default limit, 10 MB
    with pytest.raises(FeedFetchError, match=r"is larger than FEED_MAX_BYTES \(10000000\)"):
        fetch(_request(feed_server), settings)
    feed_server.status = 500
    with pytest.raises(FeedFetchError, match=re.escape(f"HTTP 500 from {feed_server.url}")):
        fetch(_request(feed_server), settings)
    with pytest.raises(FeedFetchError, match=re.escape("cannot fetch http://127.0.0.1:")):
        fetch(FeedRequest(f"http://127.0.0.1:{free_port()}/feed", None, None), settings)


def test_a_feed_is_fetched_and_not_modified_is_none(tmp_path, feed_server):
    feed_server.body = rss(Item("https://aze.media/?p=1", "One", datetime.now(UTC)))
    settings = make_settings(tmp_path)
    fetched = fetch(_request(feed_server), settings)
    assert fetched.body == feed_server.body and fetched.etag
    assert fetch(FeedRequest(feed_server.url, fetched.etag, None), settings) is None
