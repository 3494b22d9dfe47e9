"""Fetch one feed with a conditional GET and hand what changed to the feed rules.

FEED_TIMEOUT_SECONDS bounds the whole fetch: connecting, the headers and every byte of the
body. A per-read timeout does not: a server that sends one byte every few seconds never
trips it, and held a worker for as long as it liked. No database transaction stays open
while a feed is fetched.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urljoin, urlsplit

import aiohttp
from sqlalchemy.orm import Session

from notifier.config import Settings
from notifier.domain.feeds import FeedParseError, parse_feed, store_articles
from notifier.models import Feed
from notifier.public_addresses import PublicOnlyResolver, check_literal_host

log = logging.getLogger(__name__)
USER_AGENT = "notifier/0.1 (+feed poller)"
READ_CHUNK = 65536
REDIRECTS = frozenset((301, 302, 303, 307, 308))
ETAG_MAX_CHARS, MODIFIED_MAX_CHARS = 500, 100  # the columns' lengths


class FeedFetchError(Exception):
    pass


@dataclass(frozen=True)
class FeedRequest:
    """What a conditional GET of one feed needs, read before the fetch."""

    url: str
    etag: str | None
    last_modified: str | None


@dataclass(frozen=True)
class FetchedFeed:
    body: bytes
    etag: str | None
    last_modified: str | None


def start_poll(session: Session, feed_id: int, now: datetime) -> FeedRequest | None:
    """Note the poll and read what the fetch needs; the caller commits before fetching."""
    feed = session.get(Feed, feed_id)
    if feed is None:
        return None
    feed.last_polled_at = now
    return FeedRequest(feed.url, feed.etag, feed.last_modified)


def fetch(request: FeedRequest, settings: Settings) -> FetchedFeed | None:
    """GET the feed, or None when it has not changed (304). Raises FeedFetchError with a
    sentence when it fails, is larger than FEED_MAX_BYTES or is not complete within
    FEED_TIMEOUT_SECONDS."""
    timeout = settings.feed_timeout_seconds
    try:
        return _run(lambda: _fetch(request, settings))
    except TimeoutError:
        raise FeedFetchError(
            f"{request.url} was not fetched in full within FEED_TIMEOUT_SECONDS ({timeout:g}s)"
        ) from None
    except (aiohttp.ClientError, ValueError, OSError) as error:
        raise FeedFetchError(
            f"cannot fetch {request.url}: {error or type(error).__name__}"
        ) from None


def _run(make_coroutine):
    """asyncio.run, or, in a thread whose own event loop is running (never a worker's), the
    same in a thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make_coroutine())
    with ThreadPoolExecutor(1, thread_name_prefix="feed-fetch") as pool:
        return pool.submit(lambda: asyncio.run(make_coroutine())).result()


async def _fetch(request: FeedRequest, settings: Settings) -> FetchedFeed | None:
    headers = {"User-Agent": USER_AGENT, "Accept": "application/rss+xml, application/atom+xml, */*"}
    if request.etag:
        headers["If-None-Match"] = request.etag
    if request.last_modified:
        headers["If-Modified-Since"] = request.last_modified
    timeout = settings.feed_timeout_seconds
    # The configured feed's own host is the operator's choice (an intranet WordPress is
    # fine); every other host a redirect leads to must resolve to public addresses only.
    feed_host = urlsplit(request.url).hostname or ""
    resolver = PublicOnlyResolver([feed_host], settings.feed_allowed_networks)
    async with (
        asyncio.timeout(timeout),  # the whole fetch, whatever aiohttp's own timers do
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=resolver),
            timeout=aiohttp.ClientTimeout(total=timeout),
            trust_env=False,  # a proxy would connect for us, past the address check
        ) as session,
    ):
        url = request.url
        for _hop in range(settings.feed_max_redirects + 1):
            async with session.get(url, headers=headers, allow_redirects=False) as response:
                if response.status in REDIRECTS:
                    url = _next_hop(request.url, url, response.headers.get("Location"))
                    check_literal_host(urlsplit(url).hostname or "", [feed_host],
                                       settings.feed_allowed_networks)  # fmt: skip
                    continue
                return await _read(request.url, response, settings.feed_max_bytes)
    raise FeedFetchError(
        f"{request.url} redirects more than FEED_MAX_REDIRECTS ({settings.feed_max_redirects})"
        " times"
    )


def _next_hop(feed_url: str, url: str, location: str | None) -> str:
    """Where a redirect leads: http(s) only."""
    target = urljoin(url, location or "")
    if not location or urlsplit(target).scheme not in ("http", "https"):
        raise FeedFetchError(f"{feed_url} redirects to {target!r}, which is not an http(s) URL")
    return target


async def _read(feed_url: str, response: aiohttp.ClientResponse, max_bytes: int):
    if response.status == 304:
        return None
    if response.status != 200:
        raise FeedFetchError(f"HTTP {response.status} from {feed_url}")
    too_large = f"{feed_url} is larger than FEED_MAX_BYTES ({max_bytes})"
    if (response.content_length or 0) > max_bytes:
        raise FeedFetchError(too_large)
    body = bytearray()
    async for chunk in response.content.iter_chunked(READ_CHUNK):
        body += chunk
        if len(body) > max_bytes:
            raise FeedFetchError(too_large)
    return FetchedFeed(
        bytes(body), response.headers.get("ETag"), response.headers.get("Last-Modified")
    )


def finish_poll(
    session: Session, feed_id: int, outcome: FetchedFeed | FeedFetchError | None, now: datetime,
    grace_seconds: int,
) -> list[int]:  # fmt: skip
    """Record a poll's outcome on the feed; ids of articles to fan out (`grace_seconds`: see
    store_articles). A failure is kept on the feed (last_error), which status, /ops/ and
    /metrics show as failing."""
    feed = session.get(Feed, feed_id)
    if feed is None:
        return []
    if isinstance(outcome, FeedFetchError):
        return _failed(feed, outcome)
    if outcome is None:  # not modified
        feed.last_success_at, feed.last_error = now, None
        return []
    try:
        items = parse_feed(outcome.body, feed.url)
    except FeedParseError as error:
        return _failed(feed, error)
    new_ids = store_articles(session, feed, items, now, grace_seconds)
    # Validators that do not fit their columns are not kept: the next poll is a plain GET.
    feed.etag = outcome.etag if outcome.etag and len(outcome.etag) <= ETAG_MAX_CHARS else None
    modified = outcome.last_modified
    feed.last_modified = modified if modified and len(modified) <= MODIFIED_MAX_CHARS else None
    feed.last_success_at, feed.last_error = now, None
    return new_ids


def _failed(feed: Feed, error: Exception) -> list[int]:
    feed.last_error = str(error)
    log.warning("feed %s: %s", feed.url, error)
    return []
