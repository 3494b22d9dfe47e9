"""Feeds and articles: parse RSS/Atom into values, store each article once, decide what to announce.

The rule that keeps readers from being notified twice lives here: an article is announced
only when its guid is first seen and it is newer than the feed's subscription; edits,
updates and re-publishes of a known guid change the stored text but never announce again.
"""

from __future__ import annotations

import calendar
import html
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urljoin, urlsplit

import feedparser
import nh3
from sqlalchemy import select
from sqlalchemy.orm import Session

from notifier.domain.categories import CategoryIndex, CategoryRef
from notifier.domain.limits import (
    GUID_MAX,
    URL_MAX,
)
from notifier.models import Article, Feed
from notifier.sql import insert_ignoring_conflicts
from notifier.text import single_line, truncate

log = logging.getLogger(__name__)

SUMMARY_MAX_CHARS = 400
URL_MAX_CHARS, GUID_MAX_CHARS = URL_MAX, GUID_MAX  # the columns' lengths
# Feed text is not ours: every pattern on it runs in linear time. A block tag only gets a
# space put before it (nh3 then drops the tag); matching the whole tag up to its ">" cost
# 116 s of a worker for 600 KB of "<p<p<p…". Images are looked for in the first few <img>
# tags only, each read up to a bounded length.
_BLOCK_TAG_START = re.compile(
    r"<(?=/?(?:p|br|div|li|ul|ol|h[1-6]|tr|td|th|blockquote|section|article|figure|hr)\b)",
    re.IGNORECASE,
)
_IMG_TAG = re.compile(r"<img\b", re.IGNORECASE)
_SRC = re.compile(r"""\bsrc\s*+=\s*+["']([^"'>]++)["']""", re.IGNORECASE)
IMG_TAGS_READ, IMG_TAG_MAX_CHARS = 20, 4000


@dataclass(frozen=True)
class ParsedArticle:
    guid: str
    link: str
    title: str
    summary: str
    image_url: str | None
    published_at: datetime | None
    categories: tuple[CategoryRef, ...] = field(default=())


class FeedParseError(ValueError):
    """The document is not a feed we can read."""


def plain_text(markup: str, max_chars: int = SUMMARY_MAX_CHARS) -> str:
    """Feed HTML -> short plain text: tags dropped, entities decoded, whitespace folded."""
    spaced = _BLOCK_TAG_START.sub(" <", markup or "")  # "<p>a</p><p>b</p>": "a b", not "ab"
    text = " ".join(html.unescape(nh3.clean(spaced, tags=set())).split())
    return truncate(text, max_chars)


def absolute_http_url(url: str | None, base: str) -> str | None:
    """An absolute http(s) URL that fits its column, or None."""
    if not url:
        return None
    absolute = urljoin(base, url.strip())
    if len(absolute) > URL_MAX_CHARS:
        return None
    return absolute if urlsplit(absolute).scheme in ("http", "https") else None


def _image_of(entry: feedparser.FeedParserDict, base: str) -> str | None:
    for media in entry.get("media_content", []):
        untyped = "medium" not in media and "type" not in media
        is_image = media.get("medium") == "image" or media.get("type", "").startswith("image/")
        if (is_image or untyped) and (url := absolute_http_url(media.get("url"), base)):
            return url
    for thumb in entry.get("media_thumbnail", []):
        if url := absolute_http_url(thumb.get("url"), base):
            return url
    for link in entry.get("links", []):
        is_image = link.get("rel") == "enclosure" and link.get("type", "").startswith("image/")
        if is_image and (url := absolute_http_url(link.get("href"), base)):
            return url
    for content in entry.get("content", []):
        if src := _first_img_src(content.get("value", "")):
            return absolute_http_url(html.unescape(src), base)
    return None


def _first_img_src(markup: str) -> str | None:
    for number, tag in enumerate(_IMG_TAG.finditer(markup)):
        if number == IMG_TAGS_READ:
            break
        end = markup.find(">", tag.start(), tag.start() + IMG_TAG_MAX_CHARS)
        text = markup[tag.start() : end if end != -1 else tag.start() + IMG_TAG_MAX_CHARS]
        if match := _SRC.search(text):
            return match.group(1)
    return None


def _title(entry: feedparser.FeedParserDict) -> str:
    title = entry.get("title", "")
    if entry.get("title_detail", {}).get("type") == "text/html":  # Atom type="html"
        title = plain_text(title, max_chars=1000)
    return single_line(title)


def _published(entry: feedparser.FeedParserDict) -> datetime | None:
    parsed = entry.get("published_parsed") or entry.get("updated_parsed")
    try:
        return datetime.fromtimestamp(calendar.timegm(parsed), UTC) if parsed else None
    except (OverflowError, ValueError, OSError):  # a date no calendar of ours holds
        return None


def parse_feed(document: bytes, url: str) -> list[ParsedArticle]:
    """Parse RSS 2.0 or Atom (WordPress flavour included) into article values."""
    parsed = feedparser.parse(
        document,
        response_headers={"content-location": url, "content-type": "application/xml"},
    )
    if not parsed.get("version") and not parsed.entries:
        problem = parsed.get("bozo_exception") or "no RSS or Atom document found"
        raise FeedParseError(f"Not a readable feed: {problem}")
    articles = []
    for entry in parsed.entries:
        link = absolute_http_url(entry.get("link"), url)
        guid = (entry.get("id") or link or "").strip()
        if not guid or not link or len(guid) > GUID_MAX_CHARS:
            # One bad item never stops the rest of the feed; it is skipped with its reason.
            why = "no usable guid" if link else "no http(s) link of at most 2,000 characters"
            log.warning("feed %s: item %.200r skipped: %s", url, guid or entry.get("title"), why)
            continue
        body = entry.get("summary") or (entry.get("content") or [{}])[0].get("value", "")
        articles.append(
            ParsedArticle(
                guid=guid,
                link=link,
                title=_title(entry) or link,
                summary=plain_text(body),
                image_url=_image_of(entry, url),
                published_at=_published(entry),
                categories=tuple(
                    CategoryRef(t["term"]) for t in entry.get("tags", []) if t.get("term")
                ),
            )
        )
    return articles


def sync_feeds(session: Session, urls: Sequence[str], now: datetime) -> list[Feed]:
    """Make sure every configured feed has a row; its added_at is when we first saw it."""
    if urls:
        session.execute(
            insert_ignoring_conflicts(session, Feed.__table__),
            [{"url": url, "added_at": now} for url in urls],
        )
    return list(session.scalars(select(Feed).where(Feed.url.in_(urls)).order_by(Feed.id)))


def _should_announce(feed: Feed, item: ParsedArticle) -> bool:
    """Only what appeared after the feed was added; undated items: the first poll is a baseline."""
    if item.published_at is not None:
        # Feed dates have whole seconds; compare at that precision.
        return item.published_at >= feed.added_at.replace(microsecond=0)
    return feed.last_success_at is not None


@dataclass(frozen=True)
class StoredArticle:
    id: int
    new: bool  # first seen just now and to be announced
    # Announced already, and its categories grew within the grace period: the readers of the
    # added categories are owed it (the delivery keys keep everyone else from a second copy).
    widened: bool = False

    @property
    def to_fan_out(self) -> bool:
        return self.new or self.widened


def store_articles(
    session: Session, feed: Feed, items: Iterable[ParsedArticle], now: datetime,
    grace_seconds: int,
) -> list[int]:  # fmt: skip
    """Store new articles, refresh known ones; return ids of the articles to fan out."""
    index = CategoryIndex(session)
    to_fan_out = []
    for item in items:
        announce = _should_announce(feed, item)
        stored = store_article(session, item, now, feed, announce, grace_seconds, index)
        if stored.to_fan_out and stored.id not in to_fan_out:
            to_fan_out.append(stored.id)
    return to_fan_out


def store_article(
    session: Session, item: ParsedArticle, now: datetime, feed: Feed | None, announce: bool,
    grace_seconds: int, index: CategoryIndex | None = None,
) -> StoredArticle:  # fmt: skip
    """Insert the article once per guid (whoever sees it first: a feed or the CMS webhook),
    refresh a known one. Editors often fix a post's categories a minute after publishing:
    categories added within `grace_seconds` of the announcement are announced to their
    readers; after that, edits never send anything."""
    values = {
        "title": item.title,
        "link": item.link,
        "summary": item.summary,
        "image_url": item.image_url,
        "published_at": item.published_at,
    }
    inserted = session.execute(
        insert_ignoring_conflicts(session, Article.__table__).returning(Article.id),
        {
            **values,
            "feed_id": feed.id if feed else None,
            "guid": item.guid,
            "first_seen_at": now,
            "announce": announce,
        },
    ).scalar()
    article = session.get_one(Article, inserted) if inserted else _known(session, item.guid)
    if not inserted and any(getattr(article, k) != v for k, v in values.items()):
        for key, value in values.items():
            setattr(article, key, value)
        article.updated_at = now
    if article.feed_id is None and feed is not None:
        article.feed_id = feed.id
    before = {c.id for c in article.categories}
    article.categories = (index or CategoryIndex(session)).resolve(item.categories)
    added = {c.id for c in article.categories} - before
    in_grace = (now - article.first_seen_at).total_seconds() <= grace_seconds
    widened = bool(not inserted and article.announce and added and in_grace)
    if widened:
        article.fanned_out_at = None  # owed to more readers: the sweeper's to finish if lost
    return StoredArticle(article.id, bool(inserted and announce), widened)


def _known(session: Session, guid: str) -> Article:
    return session.scalars(select(Article).where(Article.guid == guid)).one()
