"""Fetch one feed with a conditional GET and hand what changed to the feed rules."""

from __future__ import annotations

import logging

import requests
from sqlalchemy.orm import Session

from notifier.config import Settings
from notifier.domain.feeds import FeedParseError, parse_feed, store_articles
from notifier.models import Feed
from notifier.timeutil import utcnow

log = logging.getLogger(__name__)
USER_AGENT = "notifier/0.1 (+feed poller)"


class FeedFetchError(Exception):
    pass


def fetch(feed: Feed, settings: Settings) -> requests.Response | None:
    """GET the feed, or None when it has not changed (304). Bounded in time and size."""
    headers = {"User-Agent": USER_AGENT, "Accept": "application/rss+xml, application/atom+xml, */*"}
    if feed.etag:
        headers["If-None-Match"] = feed.etag
    if feed.last_modified:
        headers["If-Modified-Since"] = feed.last_modified
    try:
        response = requests.get(
            feed.url, headers=headers, timeout=settings.feed_timeout_seconds, stream=True
        )
        if response.status_code == 304:
            return None
        if response.status_code != 200:
            raise FeedFetchError(f"HTTP {response.status_code} from {feed.url}")
        body = response.raw.read(settings.feed_max_bytes + 1, decode_content=True)
    except requests.RequestException as error:
        raise FeedFetchError(f"cannot fetch {feed.url}: {error}") from None
    if len(body) > settings.feed_max_bytes:
        raise FeedFetchError(f"{feed.url} is larger than FEED_MAX_BYTES={settings.feed_max_bytes}")
    response._content = body
    return response


def poll_feed(session: Session, feed_id: int, settings: Settings) -> list[int]:
    """Poll one feed; returns ids of new articles to announce. Errors are kept on the feed."""
    feed = session.get(Feed, feed_id)
    if feed is None:
        return []
    now = utcnow()
    feed.last_polled_at = now
    try:
        response = fetch(feed, settings)
        if response is None:
            feed.last_success_at, feed.last_error = now, None
            return []
        items = parse_feed(response.content, feed.url)
    except (FeedFetchError, FeedParseError) as error:
        feed.last_error = str(error)
        log.warning("feed %s: %s", feed.url, error)
        return []
    new_ids = store_articles(session, feed, items, now, settings.category_grace_seconds)
    feed.etag = response.headers.get("ETag")
    feed.last_modified = response.headers.get("Last-Modified")
    feed.last_success_at, feed.last_error = now, None
    return new_ids
