"""Is each feed being read? Last poll, last success, last new article, last error."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from notifier.models import Article, Feed


@dataclass(frozen=True)
class FeedHealth:
    id: int
    url: str
    last_polled_at: datetime | None
    last_success_at: datetime | None
    last_new_article_at: datetime | None
    last_error: str | None
    healthy: bool


def feed_health(session: Session, now: datetime, stale_seconds: int) -> list[FeedHealth]:
    """A feed is unhealthy when its last poll failed or it has not been read for a while."""
    newest = (
        select(Article.feed_id, func.max(Article.first_seen_at).label("newest"))
        .group_by(Article.feed_id)
        .subquery()
    )
    rows = session.execute(
        select(Feed, newest.c.newest)
        .outerjoin(newest, newest.c.feed_id == Feed.id)
        .order_by(Feed.id)
    )
    stale = now - timedelta(seconds=stale_seconds)
    return [
        FeedHealth(
            feed.id,
            feed.url,
            feed.last_polled_at,
            feed.last_success_at,
            newest_at,
            feed.last_error,
            healthy=feed.last_error is None and (feed.last_success_at or feed.added_at) >= stale,
        )
        for feed, newest_at in rows
    ]
