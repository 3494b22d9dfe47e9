"""Categories land where WordPress says they are, whichever route names them first; categories
added just after publishing reach their readers once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import func, select

from notifier.config import Settings
from notifier.db import engine_for
from notifier.domain.categories import CategoryIndex, CategoryRef
from notifier.domain.feeds import (
    FeedParseError,
    parse_feed,
    store_article,
    store_articles,
    sync_feeds,
)
from notifier.domain.webhook_articles import parse_webhook_article
from notifier.models import Article, Category
from notifier.schema import upgrade_database
from tests.support.rss import Item, rss

ADDED = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
GRACE = Settings.category_grace_seconds  # the default operators run
FEED_URL = "https://aze.media/feed/"
GUID = "https://aze.media/?p=77"


def webhook(*categories, guid: str = GUID):
    fields = {"guid": guid, "url": "https://aze.media/p77/", "title": "Story"}
    return parse_webhook_article({**fields, "categories": list(categories)})


def from_webhook(session, *categories, now: datetime = ADDED, guid: str = GUID):
    stored = store_article(session, webhook(*categories, guid=guid), now, None, True, GRACE)
    session.flush()
    return stored


def from_feed(session, *names: str, now: datetime = ADDED, guid: str = GUID) -> list[int]:
    [feed] = sync_feeds(session, [FEED_URL], ADDED - timedelta(days=1))
    feed.last_success_at = ADDED - timedelta(hours=1)
    item = Item(guid, "Story", ADDED, categories=list(names))
    ids = store_articles(session, feed, parse_feed(rss(item), FEED_URL), now, GRACE)
    session.flush()
    return ids


def slugs_of(session, guid: str = GUID) -> list[str]:
    article = session.scalars(select(Article).where(Article.guid == guid)).one()
    return sorted(c.slug for c in article.categories)


def category_count(session) -> int:
    return session.scalar(select(func.count()).select_from(Category))


@pytest.mark.parametrize(
    ("term", "feed_name", "slug"),
    [
        ({"id": 41, "slug": "oil-gas", "name": "Oil &amp; Gas"}, "Oil & Gas", "oil-gas"),
        ({"id": 42, "slug": "qarabag", "name": "Qarabağ"}, "Qarabağ", "qarabag"),
        ({"id": 43, "slug": "%d0%bd%d0%b0%d1%83%d0%ba%d0%b0", "name": "Наука"}, "Наука", "наука"),
        ({"id": 44, "slug": "say-no", "name": "&#8220;Say&#8221; &quot;no&quot;"},
         "\u201cSay\u201d \"no\"", "say-no"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("webhook_first", [True, False])
def test_the_feed_and_the_webhook_land_on_one_category(session, term, feed_name, slug,
                                                       webhook_first):  # fmt: skip
    before = category_count(session)
    if webhook_first:
        from_webhook(session, term)
        from_feed(session, feed_name)
    else:
        from_feed(session, feed_name)
        from_webhook(session, term)
    assert category_count(session) == before + 1
    assert slugs_of(session) == [slug]
    category = session.scalars(select(Category).where(Category.slug == slug)).one()
    assert category.wp_term_id == term["id"]
    assert category.name == feed_name


def test_names_differing_only_in_case_stay_two_categories(session):
    """WordPress allows 'Energy' and 'energy' side by side (slugs energy and energy-2)."""
    from_webhook(session, {"id": 5, "slug": "energy", "name": "Energy"})
    from_webhook(session, {"id": 6, "slug": "energy-2", "name": "energy"}, guid="p2")
    assert slugs_of(session) == ["energy"] and slugs_of(session, "p2") == ["energy-2"]
    from_feed(session, "energy", guid="p2")
    from_feed(session, "Energy", guid="p3")
    assert slugs_of(session, "p2") == ["energy-2"] and slugs_of(session, "p3") == ["energy"]


def test_a_new_case_twin_seen_first_in_the_feed_is_numbered_like_wordpress(session):
    from_webhook(session, {"id": 5, "slug": "energy", "name": "Energy"})
    from_feed(session, "energy", guid="p2")
    assert slugs_of(session, "p2") == ["energy-2"]
    from_webhook(session, {"id": 6, "slug": "energy-2", "name": "energy"}, guid="p2")
    assert slugs_of(session, "p2") == ["energy-2"]
    assert session.scalars(select(Category.wp_term_id).where(Category.slug == "energy-2")).one()


def test_a_case_variant_of_a_seeded_category_is_that_category(session):
    before = category_count(session)
    from_feed(session, "NEWS")
    assert slugs_of(session) == ["news"] and category_count(session) == before


def test_a_renamed_wordpress_category_keeps_its_row_and_readers(session):
    from_webhook(session, {"id": 50, "slug": "defence", "name": "Defence"})
    before = category_count(session)
    from_webhook(session, {"id": 50, "slug": "defence", "name": "Defence &amp; Security"}, guid="x")
    assert category_count(session) == before
    renamed = session.scalars(select(Category).where(Category.wp_term_id == 50)).one()
    assert (renamed.slug, renamed.name) == ("defence", "Defence & Security")


def test_old_plugin_names_still_work(session):
    """The README's first plugin sent plain, HTML-escaped names."""
    from_webhook(session, "Oil &amp; Gas", "Science")
    from_feed(session, "Oil & Gas", "Science")
    assert slugs_of(session) == ["oil-gas", "science"]


@pytest.mark.parametrize(
    ("categories", "problem"),
    [
        ("News", "list"),
        ([{"slug": "news"}], "name"),
        ([{"name": "News", "id": "5"}], "term id"),
        ([{"name": "News", "id": -1}], "term id"),
        ([{"name": "News", "id": True}], "term id"),
        ([{"name": "News", "slug": 5}], "slug"),
        ([7], "name or"),
    ],
)
def test_bad_webhook_categories_are_refused_with_a_sentence(categories, problem):
    with pytest.raises(FeedParseError, match=problem):
        parse_webhook_article({"guid": "g", "url": "https://aze.media/", "title": "T",
                               "categories": categories})  # fmt: skip


def test_an_index_resolves_the_same_names_to_the_same_rows(session):
    index = CategoryIndex(session)
    first = index.resolve([CategoryRef("Brand New"), CategoryRef("News")])
    again = index.resolve([CategoryRef("Brand  New"), CategoryRef("news")])
    assert [c.id for c in first] == [c.id for c in again]


# --------------------------------------------------------------------------- grace period


def test_categories_fixed_soon_after_publishing_are_announced(session):
    """The block editor used to announce posts as Uncategorized; the feed then shows Science."""
    first = from_webhook(session, {"id": 1, "slug": "uncategorized", "name": "Uncategorized"})
    assert first.new and not first.widened
    session.get(Article, first.id).fanned_out_at = ADDED
    widened = from_feed(session, "Science", now=ADDED + timedelta(seconds=30))
    assert widened == [first.id]
    assert session.get(Article, first.id).fanned_out_at is None, "owed: the sweeper finishes it"
    assert from_feed(session, "Science", now=ADDED + timedelta(seconds=60)) == []
    removed_then_back = from_feed(session, "Uncategorized", now=ADDED + timedelta(seconds=90))
    assert removed_then_back == [first.id], "harmless: the delivery keys send nobody twice"


def test_categories_changed_after_the_grace_period_announce_nothing(session):
    first = from_webhook(session, "News")
    late = ADDED + timedelta(seconds=GRACE + 1)
    assert from_feed(session, "News", "Science", now=late) == []
    later = from_webhook(session, "News", "Science", "Economy", now=late)
    assert not later.to_fan_out
    assert slugs_of(session) == ["economy", "news", "science"]
    assert first.id == later.id


def test_a_feed_baseline_article_is_never_announced_by_a_category_change(session):
    [feed] = sync_feeds(session, [FEED_URL], ADDED)
    old = Item(GUID, "Old", ADDED - timedelta(days=3), categories=["News"])
    assert store_articles(session, feed, parse_feed(rss(old), FEED_URL), ADDED, GRACE) == []
    old.categories = ["News", "Science"]
    again = parse_feed(rss(old), FEED_URL)
    assert store_articles(session, feed, again, ADDED + timedelta(seconds=5), GRACE) == []


# --------------------------------------------------------------------------- migration 0009


def test_migration_merges_categories_split_by_html_entities(tmp_path):
    url = f"sqlite:///{tmp_path / 'split.sqlite'}"
    upgrade_database(url, "0008")
    engine = engine_for(url)
    categories = [(100, "oil-gas", "Oil & Gas"), (101, "oil-amp-gas", "Oil &amp; Gas"),
                  (102, "rd-amp-d", "R&amp;D")]  # fmt: skip
    links = [(1, 100), (1, 101), (2, 101), (2, 102)]
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO categories (id, slug, name, created_at) "
                    "VALUES (:i, :s, :n, '2026-12-01')"),
            [{"i": i, "s": slug, "n": name} for i, slug, name in categories],
        )  # fmt: skip
        conn.execute(
            sa.text("INSERT INTO subscribers (id, email, status, created_at) "
                    "VALUES (:i, :e, 'active', '2026-12-01')"),
            [{"i": 1, "e": "a@example.com"}, {"i": 2, "e": "b@example.com"}],
        )  # fmt: skip
        conn.execute(
            sa.text("INSERT INTO subscriber_categories VALUES (:s, :c)"),
            [{"s": s, "c": c} for s, c in links],
        )
    upgrade_database(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, slug, name FROM categories WHERE id >= 100"))
        assert sorted(rows) == [(100, "oil-gas", "Oil & Gas"), (102, "r-d", "R&D")]
        merged = conn.execute(
            sa.text("SELECT subscriber_id, category_id FROM subscriber_categories ORDER BY 1, 2")
        ).all()
        assert merged == [(1, 100), (2, 100), (2, 102)]
    engine.dispose()
