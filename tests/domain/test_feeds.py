"""Feed parsing (RSS 2.0 WordPress flavour, Atom) and the store/announce rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from notifier.config import Settings
from notifier.domain.categories import CategoryRef
from notifier.domain.feeds import (
    SUMMARY_MAX_CHARS,
    FeedParseError,
    parse_feed,
    plain_text,
    single_line,
    store_articles,
    sync_feeds,
)
from notifier.models import Article, Category, Feed
from tests.support.rss import Item, rss

FEED_URL = "https://aze.media/feed/"
ADDED = datetime(2024, 5, 6, 12, 0, tzinfo=UTC)
GRACE = Settings.category_grace_seconds  # the default operators run


def wp_rss(*items: str, encoding: str = "UTF-8") -> bytes:
    """A WordPress-like RSS 2.0 document around hand-written <item> elements."""
    return (
        f'<?xml version="1.0" encoding="{encoding}"?>'
        '<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/"'
        ' xmlns:dc="http://purl.org/dc/elements/1.1/"'
        ' xmlns:media="http://search.yahoo.com/mrss/">'
        "<channel><title>Aze.Media</title><link>https://aze.media</link>"
        "<description>News from Azerbaijan</description>" + "".join(items) + "</channel></rss>"
    ).encode(encoding)


def wp_item(extra: str = "", *, link: str = "https://aze.media/p1/", guid: str = "p=1") -> str:
    return (
        f"<item><title>Title</title><link>{link}</link>"
        f'<guid isPermaLink="false">https://aze.media/?{guid}</guid>{extra}</item>'
    )


def only(document: bytes, url: str = FEED_URL):
    articles = parse_feed(document, url)
    assert len(articles) == 1, articles
    return articles[0]


# --------------------------------------------------------------------------- RSS 2.0


WORDPRESS_ITEM = wp_item(
    "<pubDate>Mon, 06 May 2024 14:30:00 +0400</pubDate>"
    "<dc:creator><![CDATA[Editor]]></dc:creator>"
    "<category><![CDATA[Logistics-Transport]]></category>"
    "<category><![CDATA[Covid-19]]></category>"
    "<description><![CDATA[<p>Port of Baku &amp; <b>rail</b> traffic grows.</p>"
    "<script>track()</script>]]></description>"
    '<content:encoded><![CDATA[<p>Full body <img src="/wp-content/uploads/body.jpg"></p>]]>'
    "</content:encoded>",
    link="https://aze.media/port-of-baku/",
    guid="p=101",
)


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("guid", "https://aze.media/?p=101"),
        ("link", "https://aze.media/port-of-baku/"),
        ("title", "Title"),
        ("summary", "Port of Baku & rail traffic grows."),
        ("image_url", "https://aze.media/wp-content/uploads/body.jpg"),
        ("published_at", datetime(2024, 5, 6, 10, 30, tzinfo=UTC)),
        ("categories", (CategoryRef("Logistics-Transport"), CategoryRef("Covid-19"))),
    ],
)
def test_wordpress_rss_item_fields(field, expected):
    assert getattr(only(wp_rss(WORDPRESS_ITEM)), field) == expected


def test_rss_items_keep_document_order_and_each_their_own_values():
    document = rss(
        Item("https://aze.media/?p=2", "Second", ADDED, categories=["Energy"]),
        Item("https://aze.media/?p=1", "First", ADDED - timedelta(days=1), categories=[]),
    )
    articles = parse_feed(document, FEED_URL)
    assert [(a.guid, a.title, a.categories) for a in articles] == [
        ("https://aze.media/?p=2", "Second", (CategoryRef("Energy"),)),
        ("https://aze.media/?p=1", "First", ()),
    ]
    assert [a.published_at for a in articles] == [ADDED, ADDED - timedelta(days=1)]


def test_summary_falls_back_to_content_encoded_when_there_is_no_description():
    item = wp_item("<content:encoded><![CDATA[<p>Only the <em>body</em></p>]]></content:encoded>")
    assert only(wp_rss(item)).summary == "Only the body"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        pytest.param(
            '<media:content url="https://cdn.aze.media/media.jpg" medium="image"/>'
            '<media:thumbnail url="https://cdn.aze.media/thumb.jpg"/>'
            '<enclosure url="https://cdn.aze.media/enc.jpg" type="image/jpeg" length="1"/>'
            '<content:encoded><![CDATA[<img src="https://cdn.aze.media/body.jpg">]]>'
            "</content:encoded>",
            "https://cdn.aze.media/media.jpg",
            id="media-content-first",
        ),
        pytest.param(
            '<media:thumbnail url="https://cdn.aze.media/thumb.jpg"/>'
            '<enclosure url="https://cdn.aze.media/enc.jpg" type="image/jpeg" length="1"/>'
            '<content:encoded><![CDATA[<img src="https://cdn.aze.media/body.jpg">]]>'
            "</content:encoded>",
            "https://cdn.aze.media/thumb.jpg",
            id="thumbnail-before-enclosure",
        ),
        pytest.param(
            '<enclosure url="https://cdn.aze.media/enc.jpg" type="image/jpeg" length="1"/>'
            '<content:encoded><![CDATA[<img src="https://cdn.aze.media/body.jpg">]]>'
            "</content:encoded>",
            "https://cdn.aze.media/enc.jpg",
            id="enclosure-before-body-img",
        ),
        pytest.param(
            '<enclosure url="https://cdn.aze.media/podcast.mp3" type="audio/mpeg" length="1"/>'
            "<content:encoded><![CDATA[<p>x</p><IMG class=\"a\" SRC='https://cdn.aze.media/b.jpg'>"
            '<img src="https://cdn.aze.media/second.jpg">]]></content:encoded>',
            "https://cdn.aze.media/b.jpg",
            id="audio-enclosure-ignored-first-body-img",
        ),
        pytest.param(
            '<media:content url="https://cdn.aze.media/clip.mp4" medium="video"/>'
            '<content:encoded><![CDATA[<img src="https://cdn.aze.media/body.jpg">]]>'
            "</content:encoded>",
            "https://cdn.aze.media/body.jpg",
            id="video-medium-ignored",
        ),
        pytest.param(
            '<media:content url="https://cdn.aze.media/untyped.jpg"/>',
            "https://cdn.aze.media/untyped.jpg",
            id="media-content-without-medium",
        ),
        pytest.param(
            '<media:content url="ftp://cdn.aze.media/a.jpg" medium="image"/>'
            '<enclosure url="https://cdn.aze.media/enc.jpg" type="image/jpeg" length="1"/>',
            "https://cdn.aze.media/enc.jpg",
            id="non-http-media-skipped",
        ),
        pytest.param(
            '<content:encoded><![CDATA[<img src="data:image/png;base64,iVBORw0KGgo=">]]>'
            "</content:encoded>",
            None,
            id="data-uri-ignored",
        ),
        pytest.param(
            '<content:encoded><![CDATA[<img src="javascript:alert(1)">]]></content:encoded>',
            None,
            id="javascript-uri-ignored",
        ),
        pytest.param(
            '<content:encoded><![CDATA[<img src="/wp-content/uploads/a.jpg?w=600&amp;h=400">]]>'
            "</content:encoded>",
            "https://aze.media/wp-content/uploads/a.jpg?w=600&h=400",
            id="relative-body-img-made-absolute-and-unescaped",
        ),
        pytest.param("<description>No picture</description>", None, id="no-image"),
    ],
)
def test_image_extraction_precedence(extra, expected):
    assert only(wp_rss(wp_item(extra))).image_url == expected


def test_media_content_typed_as_video_is_not_taken_for_the_image():
    """type="video/mp4" without medium= is a video, not a picture to put in <img>."""
    item = wp_item(
        '<media:content url="https://cdn.aze.media/clip.mp4" type="video/mp4"/>'
        '<content:encoded><![CDATA[<img src="https://cdn.aze.media/body.jpg">]]></content:encoded>'
    )
    assert only(wp_rss(item)).image_url == "https://cdn.aze.media/body.jpg"


@pytest.mark.parametrize(
    ("link", "feed_url", "expected"),
    [
        ("/2024/05/post/", "https://aze.media/feed/", "https://aze.media/2024/05/post/"),
        (
            "post/",
            "https://aze.media/category/news/feed/",
            "https://aze.media/category/news/feed/post/",
        ),
        ("https://other.example/x", "https://aze.media/feed/", "https://other.example/x"),
        ("  https://aze.media/spaced/  ", "https://aze.media/feed/", "https://aze.media/spaced/"),
    ],
)
def test_relative_links_are_made_absolute_against_the_feed_url(link, feed_url, expected):
    item = f"<item><title>T</title><link>{link}</link><guid>urn:uuid:1</guid></item>"
    assert only(wp_rss(item), feed_url).link == expected


@pytest.mark.parametrize("link", ["javascript:alert(1)", "mailto:news@aze.media", ""])
def test_items_without_an_http_link_are_skipped(link):
    document = wp_rss(
        f"<item><title>Bad</title><link>{link}</link><guid>urn:uuid:bad</guid></item>",
        "<item><title>Good</title><link>https://aze.media/good/</link></item>",
    )
    assert [a.title for a in parse_feed(document, FEED_URL)] == ["Good"]


def test_guid_defaults_to_the_link_and_title_to_the_link():
    article = only(wp_rss("<item><link>https://aze.media/untitled/</link></item>"))
    assert article.guid == "https://aze.media/untitled/"
    assert article.title == "https://aze.media/untitled/"
    assert article.published_at is None
    assert article.categories == ()


@pytest.mark.parametrize(
    "title",
    [
        "Breaking\r\nBcc: x@y",
        "Breaking&#13;&#10;Bcc: x@y",
        "Breaking\nBcc: x@y",
        "  Breaking\tBcc: x@y ",
    ],
)
def test_titles_with_line_breaks_come_out_on_one_line(title):
    article = only(wp_rss(f"<item><title>{title}</title><link>https://aze.media/b/</link></item>"))
    assert article.title == "Breaking Bcc: x@y"


def test_non_ascii_text_survives_parsing():
    title = "Ərəfədə ğ ş ı ç ö ü — Новости дня 🚀"
    item = (
        f"<item><title>{title}</title><link>https://aze.media/%C9%99/</link>"
        '<guid isPermaLink="false">https://aze.media/?p=ə</guid>'
        "<category><![CDATA[Gündəm]]></category><category><![CDATA[Новости]]></category>"
        "<description><![CDATA[<p>Şəhər mərkəzində — «Привет» 🎉</p>]]></description></item>"
    )
    article = only(wp_rss(item))
    assert article.title == title
    assert article.summary == "Şəhər mərkəzində — «Привет» 🎉"
    assert article.categories == (CategoryRef("Gündəm"), CategoryRef("Новости"))
    assert article.guid == "https://aze.media/?p=ə"


def test_non_utf8_declared_encoding_is_decoded():
    item = "<item><title>Новости дня</title><link>https://aze.media/ru/</link></item>"
    assert only(wp_rss(item, encoding="windows-1251")).title == "Новости дня"


# --------------------------------------------------------------------------- Atom

ATOM = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:base="https://aze.media/">
  <title>Aze.Media</title><id>urn:aze:feed</id><updated>2024-05-07T10:00:00Z</updated>
  <entry>
    <title>Atom one &amp; two</title>
    <id>urn:uuid:11111111-1111-1111-1111-111111111111</id>
    <link rel="alternate" type="text/html" href="https://aze.media/atom-one/"/>
    <link rel="enclosure" type="image/png" href="https://cdn.aze.media/atom.png"/>
    <category term="Energy" label="Energy (label)"/>
    <category term="Ecology"/>
    <updated>2024-05-07T10:00:00Z</updated>
    <published>2024-05-06T08:00:00+02:00</published>
    <summary type="html">&lt;p&gt;Atom &lt;b&gt;summary&lt;/b&gt;&lt;/p&gt;</summary>
    <content type="html">&lt;p&gt;Body&lt;/p&gt;</content>
  </entry>
  <entry>
    <title>Only updated</title>
    <id>tag:aze.media,2024:2</id>
    <link rel="alternate" href="/atom-two/"/>
    <updated>2024-05-07T09:15:00Z</updated>
  </entry>
  <entry>
    <title>Image in content</title>
    <id>tag:aze.media,2024:3</id>
    <link href="https://aze.media/atom-three/"/>
    <content type="html">&lt;img src="/img/three.jpg"&gt;</content>
  </entry>
</feed>"""


@pytest.mark.parametrize(
    ("index", "field", "expected"),
    [
        (0, "guid", "urn:uuid:11111111-1111-1111-1111-111111111111"),
        (0, "link", "https://aze.media/atom-one/"),
        (0, "title", "Atom one & two"),
        (0, "summary", "Atom summary"),
        (0, "image_url", "https://cdn.aze.media/atom.png"),
        (0, "published_at", datetime(2024, 5, 6, 6, 0, tzinfo=UTC)),  # published wins
        (0, "categories", (CategoryRef("Energy"), CategoryRef("Ecology"))),
        (1, "guid", "tag:aze.media,2024:2"),
        (1, "link", "https://aze.media/atom-two/"),
        (1, "published_at", datetime(2024, 5, 7, 9, 15, tzinfo=UTC)),  # updated as fallback
        (1, "image_url", None),
        (1, "summary", ""),
        (2, "published_at", None),
        (2, "image_url", "https://aze.media/img/three.jpg"),
        (2, "summary", ""),
    ],
)
def test_atom_entry_fields(index, field, expected):
    articles = parse_feed(ATOM, "https://aze.media/feed/atom/")
    assert len(articles) == 3
    assert getattr(articles[index], field) == expected


# --------------------------------------------------------------------------- not feeds


@pytest.mark.parametrize(
    "document",
    [
        pytest.param(b"<!doctype html><html><body><p>Maintenance</p></body></html>", id="html"),
        pytest.param(b"Service Unavailable", id="plain-text"),
        pytest.param(b'{"posts": []}', id="json"),
        pytest.param(b"   \n", id="whitespace"),
        pytest.param(b"\x89PNG\r\n\x1a\n\x00\x00", id="binary"),
    ],
)
def test_documents_that_are_not_feeds_raise(document):
    with pytest.raises(FeedParseError, match="Not a readable feed"):
        parse_feed(document, FEED_URL)


def test_an_empty_response_body_is_not_a_feed():
    with pytest.raises(FeedParseError):
        parse_feed(b"", FEED_URL)


@pytest.mark.parametrize(
    "document",
    [
        pytest.param(wp_rss(), id="rss"),
        pytest.param(
            b'<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
            b"<title>A</title><id>urn:a</id><updated>2024-05-06T10:00:00Z</updated></feed>",
            id="atom",
        ),
    ],
)
def test_a_valid_feed_without_items_is_read_as_empty(document):
    assert parse_feed(document, FEED_URL) == []


def test_a_truncated_feed_still_yields_the_items_it_has():
    document = wp_rss(WORDPRESS_ITEM)[: -len("</channel></rss>")]
    assert [a.guid for a in parse_feed(document, FEED_URL)] == ["https://aze.media/?p=101"]


# --------------------------------------------------------------------------- text helpers


@pytest.mark.parametrize(
    ("markup", "expected"),
    [
        ("<p>Hello <b>world</b></p>", "Hello world"),
        ("<script>document.write('x')</script>Hi", "Hi"),
        ("<style>p { color: red }</style>Hi", "Hi"),
        ("AT&amp;T &#8217;s &lt;tag&gt; &quot;q&quot; &nbsp;x", 'AT&T ’s <tag> "q" x'),
        ("a\n\n   b\t\tc\r\n", "a b c"),
        ('<a href="https://aze.media/">link</a> <img src="x.jpg" alt="pic">', "link"),
        ("Şəhər — Москва 🚀", "Şəhər — Москва 🚀"),
        ("", ""),
        (None, ""),
    ],
)
def test_plain_text(markup, expected):
    assert plain_text(markup) == expected


def test_plain_text_keeps_words_apart_across_block_tags():
    assert plain_text("<p>First paragraph.</p><p>Second</p><ul><li>One</li><li>Two</li></ul>") == (
        "First paragraph. Second One Two"
    )


def test_plain_text_truncates_on_a_word_boundary_with_an_ellipsis():
    words = " ".join(f"word{i}" for i in range(200))
    text = plain_text(words)
    assert len(text) <= SUMMARY_MAX_CHARS
    assert text.endswith("…")
    kept = text[:-1]
    assert words.startswith(kept)
    assert words[len(kept)] == " "  # cut between words, not inside one


def test_plain_text_truncation_drops_trailing_punctuation_and_honours_max_chars():
    assert plain_text("one, two, three, four", max_chars=12) == "one, two…"
    assert plain_text("x" * 30, max_chars=10) == "x" * 9 + "…"
    assert plain_text("exactly ten", max_chars=11) == "exactly ten"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Breaking\r\nBcc: x@y", "Breaking Bcc: x@y"),
        ("a\rb\nc", "a b c"),
        ("line\u2028sep\u2029para\x85nel\x0bvt\x0cff", "line sep para nel vt ff"),
        ("  padded  ", "padded"),
        ("Ərəfə ğ ş ı", "Ərəfə ğ ş ı"),
        ("", ""),
        (None, ""),
    ],
)
def test_single_line(text, expected):
    result = single_line(text)
    assert result == expected
    assert "\r" not in result and "\n" not in result


# --------------------------------------------------------------------------- storing


def store(session, feed: Feed, *items: Item, now: datetime) -> list[int]:
    return store_articles(session, feed, parse_feed(rss(*items), feed.url), now, GRACE)


def article(session, guid: str) -> Article:
    return session.scalars(select(Article).where(Article.guid == guid)).one()


@pytest.fixture
def feed(session) -> Feed:
    [feed] = sync_feeds(session, [FEED_URL], ADDED)
    return feed


def test_sync_feeds_adds_each_url_once_and_keeps_the_first_added_at(session):
    urls = [FEED_URL, "https://aze.media/category/energy/feed/"]
    first = sync_feeds(session, urls, ADDED)
    again = sync_feeds(session, [*urls, "https://aze.media/new/feed/"], ADDED + timedelta(days=1))
    assert [f.url for f in first] == urls
    assert [f.url for f in again] == [*urls, "https://aze.media/new/feed/"]
    assert [f.added_at for f in again] == [ADDED, ADDED, ADDED + timedelta(days=1)]
    assert session.scalar(select(func.count()).select_from(Feed)) == 3
    assert [f.url for f in sync_feeds(session, [urls[1]], ADDED)] == [urls[1]]
    assert sync_feeds(session, [], ADDED) == []


def test_first_poll_stores_older_items_without_announcing_them(session, feed):
    new = store(
        session,
        feed,
        Item("https://aze.media/?p=1", "Old one", ADDED - timedelta(days=2)),
        Item("https://aze.media/?p=2", "Old two", ADDED - timedelta(seconds=1)),
        now=ADDED,
    )
    assert new == []
    stored = session.scalars(select(Article).order_by(Article.guid)).all()
    assert [(a.guid, a.title, a.announce) for a in stored] == [
        ("https://aze.media/?p=1", "Old one", False),
        ("https://aze.media/?p=2", "Old two", False),
    ]
    assert all(a.feed_id == feed.id and a.first_seen_at == ADDED for a in stored)


def test_item_dated_after_the_feed_was_added_is_announced_once(session, feed):
    item = Item("https://aze.media/?p=3", "Fresh", ADDED + timedelta(minutes=5))
    first = store(session, feed, item, now=ADDED + timedelta(minutes=6))
    assert first == [article(session, item.guid).id]
    assert article(session, item.guid).announce is True
    assert store(session, feed, item, now=ADDED + timedelta(minutes=11)) == []
    assert session.scalar(select(func.count()).select_from(Article)) == 1


def test_item_dated_exactly_at_added_at_is_announced(session, feed):
    assert len(store(session, feed, Item("https://aze.media/?p=4", "Edge", ADDED), now=ADDED)) == 1


def test_feed_dates_compare_with_added_at_to_the_second(session):
    """Feed dates have whole seconds: one published in the second the feed was added counts."""
    [feed] = sync_feeds(session, [FEED_URL], ADDED + timedelta(microseconds=700_000))
    same_second = Item("https://aze.media/?p=40", "Same second", ADDED)
    second_before = Item("https://aze.media/?p=41", "Second before", ADDED - timedelta(seconds=1))
    new = store(session, feed, same_second, second_before, now=ADDED + timedelta(seconds=5))
    assert new == [article(session, same_second.guid).id]


def test_an_edited_article_is_updated_in_place_and_never_announced_again(session, feed):
    guid = "https://aze.media/?p=5"
    published = ADDED + timedelta(hours=1)
    [article_id] = store(session, feed, Item(guid, "Draft title", published), now=published)
    assert article(session, guid).updated_at is None

    edited_at = published + timedelta(hours=2)
    edit = Item(
        guid,
        "Corrected title",
        published + timedelta(hours=1),
        categories=["Energy"],
        description="New summary",
        image="https://cdn.aze.media/new.jpg",
    )
    assert store(session, feed, edit, now=edited_at) == []
    row = article(session, guid)
    assert row.id == article_id
    assert (row.title, row.summary, row.image_url) == (
        "Corrected title",
        "New summary",
        "https://cdn.aze.media/new.jpg",
    )
    assert row.published_at == published + timedelta(hours=1)
    assert row.updated_at == edited_at
    assert row.first_seen_at == published
    assert row.announce is True
    assert [c.slug for c in row.categories] == ["energy"]


def test_an_unchanged_article_seen_again_is_not_marked_updated(session, feed):
    item = Item("https://aze.media/?p=6", "Same", ADDED - timedelta(days=1))
    store(session, feed, item, now=ADDED)
    store(session, feed, item, now=ADDED + timedelta(hours=1))
    assert article(session, item.guid).updated_at is None


def test_an_old_article_redated_into_the_future_is_not_announced(session, feed):
    guid = "https://aze.media/?p=7"
    store(session, feed, Item(guid, "Old", ADDED - timedelta(days=30)), now=ADDED)
    republished = Item(guid, "Old, republished", ADDED + timedelta(days=1))
    assert store(session, feed, republished, now=ADDED + timedelta(days=1)) == []
    row = article(session, guid)
    assert row.announce is False
    assert row.updated_at == ADDED + timedelta(days=1)


def test_undated_items_are_a_baseline_on_the_first_poll_then_announced(session, feed):
    assert feed.last_success_at is None
    baseline = Item("https://aze.media/?p=8", "Undated old", None)
    assert store(session, feed, baseline, now=ADDED) == []
    assert article(session, baseline.guid).announce is False

    feed.last_success_at = ADDED
    later = Item("https://aze.media/?p=9", "Undated new", None)
    new = store(session, feed, baseline, later, now=ADDED + timedelta(minutes=5))
    assert new == [article(session, later.guid).id]
    assert store(session, feed, later, now=ADDED + timedelta(minutes=10)) == []


def test_the_same_guid_in_two_feeds_is_stored_once(session):
    main, energy = sync_feeds(session, [FEED_URL, "https://aze.media/category/energy/feed/"], ADDED)
    item = Item("https://aze.media/?p=10", "Shared", ADDED + timedelta(minutes=1))
    first = store(session, main, item, now=ADDED + timedelta(minutes=2))
    second = store(session, energy, item, now=ADDED + timedelta(minutes=3))
    assert len(first) == 1
    assert second == []
    rows = session.scalars(select(Article)).all()
    assert [(r.guid, r.feed_id) for r in rows] == [(item.guid, main.id)]


def test_the_same_guid_twice_in_one_document_is_stored_once(session, feed):
    item = Item("https://aze.media/?p=11", "Twice", ADDED + timedelta(minutes=1))
    assert len(store(session, feed, item, item, now=ADDED + timedelta(minutes=2))) == 1
    assert session.scalar(select(func.count()).select_from(Article)) == 1


def test_feed_categories_reuse_site_categories_and_create_new_ones(session, feed):
    before = session.scalar(select(func.count()).select_from(Category))
    item = Item(
        "https://aze.media/?p=12",
        "Categorised",
        ADDED - timedelta(days=1),
        categories=["Logistics-Transport", "Covid-19", "NEWS", "Sport  News", "Baku 2026"],
    )
    store(session, feed, item, now=ADDED)
    slugs = {c.slug: c.name for c in article(session, item.guid).categories}
    assert slugs == {
        "logistics-transport": "Logistics-Transport",
        "covid-19": "Covid-19",
        "news": "News",
        "sport-news": "Sport News",
        "baku-2026": "Baku 2026",
    }
    after = session.scalar(select(func.count()).select_from(Category))
    assert after == before + 2

    again = Item("https://aze.media/?p=13", "Again", ADDED - timedelta(days=1), ["Sport News"])
    store(session, feed, again, now=ADDED)
    assert session.scalar(select(func.count()).select_from(Category)) == after
    assert [c.slug for c in article(session, again.guid).categories] == ["sport-news"]


def test_non_ascii_article_round_trips_through_the_database(session, feed):
    title = "Ərəfədə ğ ş ı — Новости 🚀"
    item = Item("https://aze.media/?p=14", title, ADDED, categories=["Gündəm"])
    store(session, feed, item, now=ADDED)
    session.flush()
    session.expire_all()  # read back what the database holds, not the identity map
    row = article(session, item.guid)
    assert row.title == title
    assert [c.name for c in row.categories] == ["Gündəm"]


def test_values_too_long_for_their_columns_skip_one_item_not_the_feed(session, feed):
    """Every poll of such a feed used to fail on PostgreSQL (StringDataRightTruncation)."""
    from notifier.polling.fetch import FetchedFeed, finish_poll

    long_url = "https://aze.media/" + "x" * 2500
    document = rss(
        Item("https://aze.media/?p=31", "Huge image", ADDED + timedelta(minutes=1),
             image=long_url + ".jpg"),
        Item("https://aze.media/?p=32", "Huge link", ADDED + timedelta(minutes=1),
             link=long_url),
        Item("x" * 2500, "Huge guid", ADDED + timedelta(minutes=1)),
        Item("https://aze.media/?p=34", "Fine", ADDED + timedelta(minutes=1)),
    )  # fmt: skip
    outcome = FetchedFeed(document, etag='"' + "e" * 600 + '"', last_modified="M" * 200)
    new = finish_poll(session, feed.id, outcome, ADDED + timedelta(minutes=2), GRACE)
    session.flush()
    stored = {a.title: a for a in session.scalars(select(Article))}
    assert set(stored) == {"Huge image", "Fine"} and len(new) == 2
    assert stored["Huge image"].image_url is None
    assert feed.last_error is None and feed.etag is None and feed.last_modified is None
