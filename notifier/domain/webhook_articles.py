"""The CMS publish webhook: a post as the WordPress plugin announces it, checked field by
field, stored and announced through the same rules as a feed item."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urljoin

from sqlalchemy.orm import Session

from notifier.domain.categories import CategoryIndex, CategoryRef
from notifier.domain.feeds import (
    FeedParseError,
    ParsedArticle,
    StoredArticle,
    absolute_http_url,
    plain_text,
    store_article,
)
from notifier.domain.limits import (
    ARTICLE_TITLE_MAX,
    CATEGORY_NAME_MAX,
    GUID_MAX,
    URL_MAX,
    WEBHOOK_CATEGORIES_MAX,
)
from notifier.text import single_line


def publish_webhook_article(
    session: Session, item: ParsedArticle, now: datetime, grace_seconds: int,
    max_new_categories: int,
) -> StoredArticle:  # fmt: skip
    """Store and announce the CMS's post. Categories new to us appear on the public form, so
    one call may add only a few: more is refused whole, before anything is stored."""
    index = CategoryIndex(session)
    new = index.count_new(item.categories)
    if new > max_new_categories:
        raise FeedParseError(
            f"This post names {new} categories notifier does not know; one call may add at "
            f"most {max_new_categories} (WEBHOOK_MAX_NEW_CATEGORIES)."
        )
    return store_article(session, item, now, None, True, grace_seconds, index)


def parse_webhook_article(data: object) -> ParsedArticle:
    """The CMS announces a just-published post with the same fields a feed item has."""
    if not isinstance(data, dict):
        raise FeedParseError("Send a JSON object with guid, url, title, categories.")
    guid, url, title = (_webhook_text(data, k).strip() for k in ("guid", "url", "title"))
    if not guid or len(data["guid"]) > GUID_MAX:
        raise FeedParseError(f"guid is required, at most {GUID_MAX} characters "
                             "(WordPress: get_the_guid($post)).")  # fmt: skip
    if not absolute_http_url(url, url) or len(data["url"]) > URL_MAX:
        raise FeedParseError(f"url must be the post's http(s) permalink, at most {URL_MAX} "
                             "characters.")  # fmt: skip
    if not single_line(title) or len(data["title"]) > ARTICLE_TITLE_MAX:
        raise FeedParseError(f"title is required, at most {ARTICLE_TITLE_MAX} characters.")
    image = _webhook_text(data, "image").strip()
    if len(data.get("image") or "") > URL_MAX or len(urljoin(url, image)) > URL_MAX:
        raise FeedParseError(f"image must be a URL of at most {URL_MAX} characters.")
    categories = data.get("categories")
    return ParsedArticle(
        guid=guid,
        link=url,
        title=single_line(title),
        summary=plain_text(_webhook_text(data, "summary")),
        image_url=absolute_http_url(image, url),  # relative to the post; not http(s): no image
        published_at=_webhook_published_at(data.get("published_at")),
        categories=_webhook_categories([] if categories is None else categories),
    )


def _webhook_text(data: dict, name: str) -> str:
    """Absent or null reads as empty; a number or a list where text belongs is refused."""
    value = data.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise FeedParseError(f"{name} must be text.")
    return value


def _webhook_published_at(value: object) -> datetime | None:
    """ISO 8601 with a time zone; null, "" or false (WordPress's get_post_time() for a post
    without a date) mean unknown."""
    if value is None or value is False or value == "":
        return None
    if not isinstance(value, str):
        raise FeedParseError("published_at must be an ISO 8601 date and time.")
    try:
        published_at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise FeedParseError("published_at must be an ISO 8601 date and time.") from None
    if published_at.tzinfo is None:
        raise FeedParseError("published_at needs a time zone.")
    try:
        return published_at.astimezone(UTC)
    except OverflowError:  # year 1 or 9999 with an offset: no such instant in UTC
        raise FeedParseError("published_at is out of range.") from None


def _webhook_categories(categories: object) -> tuple[CategoryRef, ...]:
    """Names (the old plugin), or WordPress terms {"id", "slug", "name"} (ours)."""
    if not isinstance(categories, list) or len(categories) > WEBHOOK_CATEGORIES_MAX:
        raise FeedParseError(
            f"categories must be a list of at most {WEBHOOK_CATEGORIES_MAX} categories."
        )
    refs = []
    for category in categories:
        if isinstance(category, str):
            refs.append(CategoryRef(category))
            continue
        if not isinstance(category, dict):
            raise FeedParseError('Each category is a name or {"id", "slug", "name"}.')
        name, slug, term_id = category.get("name"), category.get("slug"), category.get("id")
        if not isinstance(name, str) or not name.strip() or len(name) > CATEGORY_NAME_MAX:
            raise FeedParseError("Each category needs its name.")
        if slug is not None and (not isinstance(slug, str) or len(slug) > CATEGORY_NAME_MAX):
            raise FeedParseError("A category slug must be text.")
        valid_id = isinstance(term_id, int) and not isinstance(term_id, bool) and term_id > 0
        if term_id is not None and not (valid_id and term_id < 2**31):
            raise FeedParseError("A category id must be WordPress's positive term id.")
        refs.append(CategoryRef(name, slug or None, term_id))
    return tuple(refs)
