"""Rendering emails (templates, inlined CSS, escaping, MIME) and composing them for readers."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, datetime
from email.message import EmailMessage
from types import SimpleNamespace

import pytest
from jinja2 import UndefinedError
from sqlalchemy import select

from notifier.branding import Brand, contrast_ratio
from notifier.config import PROJECT_ROOT
from notifier.delivery.addressing import Unwanted, address_chunk
from notifier.delivery.compose import Composer
from notifier.delivery.rendering import MessageRenderer
from notifier.domain.audiences import SUBSCRIBERS
from notifier.messages import RenderedEmail
from notifier.models import (
    Alert,
    AlertStatus,
    Article,
    Category,
    Delivery,
    Feed,
    Subscriber,
    SubscriberStatus,
)
from notifier.tokens import Tokens
from tests.conftest import make_settings

TEMPLATES = PROJECT_ROOT / "templates"
MAIL_FROM = "Aze.Media <news@aze.test>"
BRAND = Brand(name="Aze.Media", url="https://aze.media/", accent="#b91c1c")
SITE = {"site_name": "Aze.Media", "site_url": "https://aze.media/", "brand": BRAND,
        "view_url": None, "web_version": False}  # fmt: skip
VIEW = "http://127.0.0.1:8000/email/TOKEN-V"


def article_value(**changes) -> SimpleNamespace:
    values = {
        "title": "Baku port traffic grows",
        "link": "https://aze.media/port/",
        "image_url": "https://cdn.aze.media/port.jpg",
        "summary": "Rail and sea freight are up.",
    }
    return SimpleNamespace(**{**values, **changes})


CONTEXTS = {
    "article": {
        **SITE,
        "view_url": VIEW,
        "article": article_value(),
        "matched_categories": ["Energy", "News"],
        "unsubscribe_url": "http://127.0.0.1:8000/unsubscribe/TOKEN-U",
        "manage_url": "http://127.0.0.1:8000/preferences/TOKEN-M",
    },
    "alert": {
        **SITE,
        "view_url": VIEW,
        "alert": {
            "title": "Ceasefire <announced> & signed",
            "body": "Both sides agreed at dawn.",
            "url": "https://aze.media/breaking/",
            "image_url": "https://aze.media/wp-content/uploads/breaking.jpg",
        },
        "matched_categories": ["Defense"],
        "unsubscribe_url": "http://127.0.0.1:8000/unsubscribe/TOKEN-U",
        "manage_url": "http://127.0.0.1:8000/preferences/TOKEN-M",
    },
    "digest": {
        **SITE,
        "groups": [
            {
                "name": "Economy",
                "articles": [article_value(), article_value(title="Manat holds")],
                "more": 3,
                "more_url": "https://aze.media/category/economy/",
            },
            {
                "name": "News",
                "articles": [article_value(summary="")],
                "more": 0,
                "more_url": "https://aze.media/category/news/",
            },
        ],
        "cadence": "daily",
        "other_cadence": "weekly",
        "article_count": 3,
        "matched_categories": ["Economy", "News"],
        "unsubscribe_url": "http://127.0.0.1:8000/unsubscribe/TOKEN-U",
        "manage_url": "http://127.0.0.1:8000/preferences/TOKEN-M",
        "view_url": "http://127.0.0.1:8000/digest/TOKEN-V",
        "switch_instant_url": "http://127.0.0.1:8000/digest/switch/TOKEN-I",
        "switch_other_url": "http://127.0.0.1:8000/digest/switch/TOKEN-W",
    },
    "confirm": {
        **SITE,
        "categories": ["Energy", "News"],
        "confirm_url": "http://127.0.0.1:8000/confirm/TOKEN-C",
        "valid_days": 7,
    },
    "manage_link": {**SITE, "manage_url": "http://127.0.0.1:8000/preferences/TOKEN-M"},
}
KINDS = sorted(p.name for p in (TEMPLATES / "email").iterdir() if p.is_dir())


@pytest.fixture(scope="module")
def renderer() -> MessageRenderer:
    return MessageRenderer(TEMPLATES)


def parse(message: EmailMessage) -> EmailMessage:
    """What a mail client sees: the bytes we would put on the wire, parsed back."""
    return email.message_from_bytes(bytes(message), policy=email.policy.default)


def parts(message: EmailMessage) -> dict[str, str]:
    """Decoded alternatives, with the wire's CRLF line ends turned back into LF."""
    return {
        p.get_content_type(): p.get_content().replace("\r\n", "\n") for p in message.iter_parts()
    }


# --------------------------------------------------------------------------- templates


def test_every_email_template_folder_has_a_test_context():
    assert sorted(CONTEXTS) == KINDS


@pytest.mark.parametrize("kind", KINDS)
def test_every_email_template_renders(renderer, kind):
    rendered = renderer.render_email(kind, "reader@example.com", CONTEXTS[kind])
    assert rendered.to == "reader@example.com"
    assert rendered.subject and "\n" not in rendered.subject
    assert "Aze.Media" in rendered.html
    assert rendered.text.endswith("\n") and not rendered.text.endswith("\n\n")
    for value in CONTEXTS[kind].values():
        if isinstance(value, str) and value.startswith("http://127.0.0.1"):
            assert value in rendered.text
            assert f'href="{value}"' in rendered.html


@pytest.mark.parametrize("kind", KINDS)
def test_templates_use_strict_undefined(renderer, kind):
    context = dict(CONTEXTS[kind])
    del context["site_name"]
    with pytest.raises(UndefinedError):
        renderer.render_email(kind, "reader@example.com", context)


@pytest.mark.parametrize("kind", KINDS)
def test_html_has_inlined_styles_and_only_dark_mode_left_in_a_style_tag(renderer, kind):
    html = renderer.render_email(kind, "reader@example.com", CONTEXTS[kind]).html
    [sheet] = re.findall(r"<style>(.*?)</style>", html, re.S)
    assert sheet.strip().startswith("@media (prefers-color-scheme: dark)")
    assert sheet.count("{") == sheet.count("}") and sheet.strip().endswith("}")
    assert re.search(r'<body[^>]*style="[^"]*background: #f3f4f6', html)
    assert re.search(r'<a class="button"[^>]*style="[^"]*background: #b91c1c', html)


def test_article_template_shows_the_article(renderer):
    rendered = renderer.render_email("article", "reader@example.com", CONTEXTS["article"])
    assert rendered.subject == "Baku port traffic grows"
    assert "Energy · News" in rendered.html
    assert 'src="https://cdn.aze.media/port.jpg"' in rendered.html
    assert "Read the article: https://aze.media/port/" in rendered.text
    assert "Rail and sea freight are up." in rendered.text


def test_article_without_image_or_summary_renders_neither(renderer):
    context = {**CONTEXTS["article"], "article": article_value(image_url=None, summary="")}
    html = renderer.render_email("article", "reader@example.com", context).html
    assert "<img" not in html
    assert html.count("<p ") == 2  # the kicker and the button; no empty summary paragraph


def test_article_title_and_summary_are_escaped_in_html(renderer):
    article = article_value(
        title="<script>alert(1)</script> Tom & Jerry",
        summary="Less < more & <b>bold</b>",
        link="https://aze.media/a?x=1&y=2",
    )
    context = {**CONTEXTS["article"], "article": article}
    rendered = renderer.render_email("article", "reader@example.com", context)
    assert "<script" not in rendered.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Tom &amp; Jerry" in rendered.html
    assert "Less &lt; more &amp; &lt;b&gt;bold&lt;/b&gt;" in rendered.html
    assert 'href="https://aze.media/a?x=1&amp;y=2"' in rendered.html
    # The plain-text part and the subject are not HTML: no entities there.
    assert rendered.subject == "<script>alert(1)</script> Tom & Jerry"
    assert "Less < more & <b>bold</b>" in rendered.text


def test_rendered_subject_never_spans_lines(renderer):
    context = {**CONTEXTS["article"], "article": article_value(title="Breaking\r\nBcc: x@y")}
    rendered = renderer.render_email("article", "reader@example.com", context)
    assert rendered.subject == "Breaking Bcc: x@y"
    assert parse(rendered.to_mime(MAIL_FROM)).get_all("Bcc") is None


# --------------------------------------------------------------------------- MIME


def test_mime_parses_back_as_text_and_html_alternatives(renderer):
    rendered = renderer.render_email("confirm", "reader@example.com", CONTEXTS["confirm"])
    message = parse(rendered.to_mime(MAIL_FROM))
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    assert parts(message) == {"text/plain": rendered.text, "text/html": rendered.html + "\n"}
    [sender] = message["From"].addresses
    assert (sender.display_name, sender.addr_spec) == ("Aze.Media", "news@aze.test")
    assert message["To"] == "reader@example.com"
    assert message["Subject"] == "Confirm your subscription to Aze.Media"
    assert message["Date"] and message["Message-ID"].endswith("@aze.test>")


def test_every_message_gets_its_own_message_id(renderer):
    rendered = renderer.render_email("manage_link", "reader@example.com", CONTEXTS["manage_link"])
    ids = {parse(rendered.to_mime(MAIL_FROM))["Message-ID"] for _ in range(3)}
    assert len(ids) == 3


def test_mime_lines_stay_within_the_smtp_limit(renderer):
    context = {**CONTEXTS["article"], "article": article_value(summary="word " * 400)}
    rendered = renderer.render_email("article", "reader@example.com", context)
    for line in bytes(rendered.to_mime(MAIL_FROM)).split(b"\r\n"):
        assert len(line) <= 998


def test_non_ascii_subject_and_body_round_trip(renderer):
    title = "Azərbaycan və Türkiyə arasında yeni enerji dəhlizi: Bakı–Qars xətti — Новости 🚀"
    article = article_value(title=title, summary="Şəhər mərkəzində «Привет» 🎉")
    context = {**CONTEXTS["article"], "article": article, "matched_categories": ["Gündəm"]}
    rendered = renderer.render_email("article", "reader@example.com", context)
    raw = bytes(rendered.to_mime(MAIL_FROM))
    header_block = raw.split(b"\r\n\r\n", 1)[0]
    assert header_block.isascii()  # encoded words, not raw UTF-8 in headers
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["Subject"] == title
    body = parts(message)
    assert "Şəhər mərkəzində «Привет» 🎉" in body["text/plain"]
    assert "Şəhər mərkəzində «Привет» 🎉" in body["text/html"]
    assert "Gündəm" in body["text/html"]


def test_long_non_ascii_subject_keeps_its_spaces_when_folded():
    """A folded subject must decode to the same words (RFC 2047 drops space between words)."""
    title = " ".join(["Ərəfədə ğ ş ı ç ö ü — Новости дня 🚀"] * 3)
    rendered = RenderedEmail("reader@example.com", title, "t", "<p>h</p>")
    assert parse(rendered.to_mime(MAIL_FROM))["Subject"] == title


@pytest.mark.parametrize(
    "value",
    ["v\r\nBcc: evil@example.com", "v\nBcc: evil@example.com", "v\rBcc: evil@example.com"],
)
def test_line_breaks_in_extra_header_values_never_make_a_new_header(value):
    rendered = RenderedEmail("r@example.com", "s", "t", "<p>h</p>", {"X-Custom": value})
    message = parse(rendered.to_mime(MAIL_FROM))
    assert message.get_all("Bcc") is None
    assert message["X-Custom"] == "v Bcc: evil@example.com"


def test_line_breaks_in_a_subject_become_spaces_never_a_header():
    rendered = RenderedEmail("r@example.com", "Hi\r\nBcc: evil@example.com", "t", "<p>h</p>")
    message = parse(rendered.to_mime(MAIL_FROM))
    assert message.get_all("Bcc") is None
    assert message["Subject"] == "Hi Bcc: evil@example.com"


def test_line_breaks_in_a_recipient_are_refused_not_sent():
    rendered = RenderedEmail("r@example.com\r\nBcc: e@x", "s", "t", "<p>h</p>")
    with pytest.raises(ValueError):
        rendered.to_mime(MAIL_FROM)


# --------------------------------------------------------------------------- composing

NOW = datetime(2024, 5, 6, 12, 0, tzinfo=UTC)


@pytest.fixture
def app_settings(tmp_path, database_url):
    return make_settings(tmp_path, DATABASE_URL=database_url)


@pytest.fixture
def composer(app_settings) -> Composer:
    return Composer(app_settings)


@pytest.fixture
def tokens(app_settings) -> Tokens:
    return Tokens(app_settings.secret_key, app_settings.confirm_max_age_seconds)


def categories(session, *slugs: str) -> list[Category]:
    found = {c.slug: c for c in session.scalars(select(Category).where(Category.slug.in_(slugs)))}
    return [found[s] for s in slugs]


def make_delivery(
    session,
    *,
    follows: tuple[str, ...] = ("news", "energy", "culture"),
    article_in: tuple[str, ...] = ("energy", "news", "economy"),
    status: SubscriberStatus = SubscriberStatus.ACTIVE,
    title: str = "Baku port traffic grows",
) -> Delivery:
    feed = Feed(url="https://aze.media/feed/", added_at=NOW)
    subscriber = Subscriber(
        email="reader@example.com",
        status=status,
        confirmed_at=NOW,
        categories=categories(session, *follows),
    )
    session.add_all([feed, subscriber])
    session.flush()
    article = Article(
        feed_id=feed.id,
        guid="https://aze.media/?p=1",
        link="https://aze.media/port/",
        title=title,
        summary="Rail and sea freight are up.",
        image_url="https://cdn.aze.media/port.jpg",
        published_at=NOW,
        first_seen_at=NOW,
        announce=True,
        categories=categories(session, *article_in),
    )
    session.add(article)
    session.flush()
    delivery = Delivery(article_id=article.id, subscriber_id=subscriber.id, channel="email")
    session.add(delivery)
    session.flush()
    return delivery


def email_for(session, composer, delivery) -> RenderedEmail | str:
    """What the send path makes of one delivery: the send-time check (addressing), then the
    whole email rendered for that reader; or the reason it must not go out any more."""
    entries = address_chunk(session, "email", SUBSCRIBERS, [delivery.id])
    if not entries:  # the row is gone with its recipient or article: nothing goes
        return "recipient or article deleted"
    [entry] = entries
    return entry.reason if isinstance(entry, Unwanted) else composer.email(entry)


def token_in(url: str, prefix: str) -> str:
    assert url.startswith(prefix), url
    return url.removeprefix(prefix)


def test_article_email_for_an_active_follower(session, composer, tokens):
    delivery = make_delivery(session)
    rendered = email_for(session, composer, delivery)
    assert isinstance(rendered, RenderedEmail)
    assert rendered.to == "reader@example.com"
    assert rendered.subject == "Baku port traffic grows"
    assert "Energy · News" in rendered.html  # matched categories only, by name
    assert "Economy" not in rendered.html and "Culture" not in rendered.html

    message = parse(rendered.to_mime(MAIL_FROM))
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["List-Id"] == "Aze.Media <news.127.0.0.1>"
    header = message["List-Unsubscribe"]
    assert header.startswith("<") and header.endswith(">")
    unsubscribe_url = header[1:-1]
    request = tokens.read_unsubscribe_token(
        token_in(unsubscribe_url, "http://127.0.0.1:8000/unsubscribe/")
    )
    assert request.subscriber_id == delivery.subscriber_id
    assert set(request.category_ids) == {c.id for c in categories(session, "news", "energy")}
    body = parts(message)
    assert f"Unsubscribe: {unsubscribe_url}" in body["text/plain"]
    assert f'href="{unsubscribe_url}"' in body["text/html"]

    manage_url = re.search(r"Manage your subscription: (\S+)", body["text/plain"]).group(1)
    manage_token = token_in(manage_url, "http://127.0.0.1:8000/preferences/")
    assert tokens.read_manage_token(manage_token) == delivery.subscriber_id


def test_article_email_subject_from_a_multiline_title_is_one_line(session, composer):
    delivery = make_delivery(session, title="Breaking\r\nBcc: x@y")
    message = parse(email_for(session, composer, delivery).to_mime(MAIL_FROM))
    assert message["Subject"] == "Breaking Bcc: x@y"
    assert message.get_all("Bcc") is None


@pytest.mark.parametrize(
    "status",
    [SubscriberStatus.PENDING, SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED],
)
def test_no_article_email_for_a_subscriber_who_is_not_active(session, composer, status):
    delivery = make_delivery(session, status=status)
    assert email_for(session, composer, delivery) == f"email recipient is {status.value}"


def test_no_article_email_when_the_reader_no_longer_follows_its_categories(session, composer):
    delivery = make_delivery(session)
    subscriber = session.get(Subscriber, delivery.subscriber_id)
    subscriber.categories = categories(session, "culture", "history")
    session.flush()
    reason = email_for(session, composer, delivery)
    assert reason == "recipient no longer follows any of the article's categories"


def test_an_alert_matches_the_categories_the_reader_follows_among_its_own(session):
    """An alert to chosen categories matches the reader on those they follow; one to every
    category on all the categories they follow, which the alert itself does not name (the
    unsubscribe link and the email's category line are made from these)."""
    reader = Subscriber(
        email="reader@example.com",
        status=SubscriberStatus.ACTIVE,
        confirmed_at=NOW,
        categories=categories(session, "culture", "defense"),
    )
    chosen = Alert(
        title="Chosen",
        url="https://aze.media/a",
        status=AlertStatus.SENDING,
        categories=categories(session, "defense", "news"),
    )
    everyone = Alert(title="Everyone", url="https://aze.media/b", status=AlertStatus.SENDING,
                     target_all=True)  # fmt: skip
    session.add_all([reader, chosen, everyone])
    session.flush()
    rows = [Delivery(alert_id=alert.id, subscriber_id=reader.id, channel="email")
            for alert in (chosen, everyone)]  # fmt: skip
    session.add_all(rows)
    session.flush()
    entries = address_chunk(session, "email", SUBSCRIBERS, [row.id for row in rows])
    assert [[c.slug for c in entry.matched] for entry in entries] == [
        ["defense"], ["culture", "defense"]]  # fmt: skip


def test_no_article_email_when_the_subscriber_is_gone(session, composer):
    delivery = make_delivery(session)
    ghost = Delivery(article_id=delivery.article_id, subscriber_id=10_000, channel="email")
    assert email_for(session, composer, ghost) == "recipient or article deleted"


def test_confirmation_email_carries_a_confirm_link_for_exactly_those_categories(
    session, composer, tokens
):
    delivery = make_delivery(session, status=SubscriberStatus.PENDING)
    wanted = categories(session, "science", "energy")
    rendered = composer.confirmation_email(session, delivery.subscriber_id, [c.id for c in wanted])
    assert rendered.subject == "Confirm your subscription to Aze.Media"
    assert "Energy, Science" in rendered.text
    assert "This link works for 7 days." in rendered.text
    confirm_url = re.search(r"Confirm: (\S+)", rendered.text).group(1)
    request = tokens.read_confirm_token(token_in(confirm_url, "http://127.0.0.1:8000/confirm/"))
    assert request.subscriber_id == delivery.subscriber_id
    assert request.is_for("reader@example.com")
    assert set(request.category_ids) == {c.id for c in wanted}
    assert "List-Unsubscribe" not in rendered.headers


def test_manage_link_email(session, composer, tokens):
    delivery = make_delivery(session)
    rendered = composer.manage_link_email(session, delivery.subscriber_id)
    assert rendered.to == "reader@example.com"
    assert rendered.subject == "Your Aze.Media subscription"
    manage_url = re.search(r"unsubscribe: (\S+)", rendered.text).group(1)
    manage_token = token_in(manage_url, "http://127.0.0.1:8000/preferences/")
    assert tokens.read_manage_token(manage_token) == delivery.subscriber_id


def test_service_emails_for_an_unknown_subscriber_are_none(session, composer):
    assert composer.confirmation_email(session, 10_000, [1]) is None
    assert composer.manage_link_email(session, 10_000) is None


# --------------------------------------------------------------------------- what every email has

PREHEADERS = {
    "article": "Rail and sea freight are up.",
    "alert": "Both sides agreed at dawn.",
    "digest": "3 new articles in Economy, News: Baku port traffic grows",
    "confirm": "One click to get new articles in Energy, News from Aze.Media.",
    "manage_link": "Your link to change categories, pause email or unsubscribe.",
}


def _style_of(html: str, css_class: str) -> str:
    return re.search(rf'class="{css_class}"[^>]*style="([^"]*)"', html).group(1)


def _colour(style: str, prop: str) -> str:
    return re.search(rf"(?:^|;)\s*{prop}:\s*(#[0-9a-f]{{3,6}})", style).group(1)


@pytest.mark.parametrize("kind", KINDS)
def test_every_email_opens_with_a_hidden_preheader(renderer, kind):
    html = renderer.render_email(kind, "reader@example.com", CONTEXTS[kind]).html
    body = html.split("<body", 1)[1].split(">", 1)[1].lstrip()
    assert body.startswith('<div class="preheader"'), "the first text a mail client shows"
    assert "display: none" in _style_of(html, "preheader")
    text = re.search(r'class="preheader"[^>]*>([^<]*)<', html).group(1)
    assert text.startswith(PREHEADERS[kind])


@pytest.mark.parametrize("kind", KINDS)
def test_footer_and_top_line_read_at_aa_contrast(renderer, kind):
    html = renderer.render_email(kind, "reader@example.com", CONTEXTS[kind]).html
    page = _colour(re.search(r'<body[^>]*style="([^"]*)"', html).group(1), "background")
    for part in ("footer", "top") if kind in ("article", "alert") else ("footer",):
        ratio = contrast_ratio(_colour(_style_of(html, part), "color"), page)
        assert ratio >= 4.5, f"{kind} {part}: {ratio:.2f}:1"


@pytest.mark.parametrize("kind", KINDS)
def test_every_email_has_a_dark_mode(renderer, kind):
    html = renderer.render_email(kind, "reader@example.com", CONTEXTS[kind]).html
    assert '<meta name="color-scheme" content="light dark">' in html
    dark = re.search(r"@media \(prefers-color-scheme: dark\) \{(.*)\}", html, re.S).group(1)
    background = re.search(r"body \{ background: (#\w+) !important", dark).group(1)
    footer = re.search(r"\.top, \.footer \{ color: (#\w+) !important", dark).group(1)
    assert contrast_ratio(footer, background) >= 4.5


def test_notification_emails_link_their_web_version_and_service_emails_do_not(renderer):
    for kind in ("article", "alert"):
        rendered = renderer.render_email(kind, "reader@example.com", CONTEXTS[kind])
        assert f'<a href="{VIEW}"' in rendered.html and "in your browser" in rendered.html
        assert f"Read this email in your browser: {VIEW}" in rendered.text
    for kind in ("confirm", "manage_link"):
        rendered = renderer.render_email(kind, "reader@example.com", CONTEXTS[kind])
        assert "/email/" not in rendered.html and "/email/" not in rendered.text


@pytest.mark.parametrize("kind", KINDS)
def test_images_have_alt_text_and_a_fixed_size(renderer, kind):
    brand = Brand("Aze.Media", "https://aze.media/", "#b91c1c", logo_url="https://aze.media/l.png")
    html = renderer.render_email(kind, "r@example.com", {**CONTEXTS[kind], "brand": brand}).html
    images = re.findall(r"<img [^>]*>", html)
    assert images, "the logo at least"
    for image in images:
        assert re.search(r' alt="[^"]*"', image), image
        assert re.search(r' (width|height)="\d+"', image), image
    assert 'alt="Aze.Media"' in html, "the logo says whose it is"


@pytest.mark.parametrize("kind", KINDS)
def test_the_brand_reaches_every_email(renderer, kind):
    brand = Brand(
        "Aze.Media", "https://aze.media/", "#1d4ed8", logo_url="https://aze.media/logo.png",
        postal_address="1 Istiqlaliyyat St, Baku", privacy_url="https://aze.media/privacy/",
    )  # fmt: skip
    rendered = renderer.render_email(kind, "r@example.com", {**CONTEXTS[kind], "brand": brand})
    assert "background: #1d4ed8" in _style_of(rendered.html, "button")
    assert (
        "1 Istiqlaliyyat St, Baku" in rendered.html and "1 Istiqlaliyyat St, Baku" in rendered.text
    )
    assert '<a href="https://aze.media/privacy/"' in rendered.html
    assert "Privacy policy: https://aze.media/privacy/" in rendered.text


def test_the_plain_text_part_reads_on_its_own(renderer):
    context = {**CONTEXTS["article"], "article": article_value(summary="")}
    text = renderer.render_email("article", "reader@example.com", context).text
    assert "\n\n\n" not in text, "no gap where the summary would be"
    assert "<a " not in text and "&amp;" not in text
    lines = text.splitlines()
    assert lines[0] == "Aze.Media — Energy, News" and lines[2] == "Baku port traffic grows"
    assert "Read the article: https://aze.media/port/" in lines


def test_every_notification_of_a_notice_links_the_same_web_version(session, composer):
    """The link names the notice and the categories, never the reader: opening it tracks
    nobody, and the layout rendered once per notice holds it for every reader."""
    first = make_delivery(session)
    follows = categories(session, "news", "energy")
    other = Subscriber(email="other@example.com", status=SubscriberStatus.ACTIVE,
                       confirmed_at=NOW, categories=follows)  # fmt: skip
    session.add(other)
    session.flush()
    second = Delivery(article_id=first.article_id, subscriber_id=other.id, channel="email")
    session.add(second)
    session.flush()
    links = {
        re.search(r"in your browser: (\S+)", email_for(session, composer, d).text).group(1)
        for d in (first, second)
    }
    assert len(links) == 1
    view = composer.urls.tokens.read_email_view_token(links.pop().rsplit("/", 1)[1])
    assert (view.kind, view.notice_id) == ("article", first.article_id)


@pytest.mark.parametrize(
    "title",
    [
        "Plain title",
        'Quotes " and \\ backslash',
        "Qarabağ — Новости 🚀",
        "In a NOTIFIERSLOT1MANAGEURL title",
    ],
)
def test_a_push_carries_its_payload_encoded_once_per_article_exactly_as_json(title, tmp_path):
    """Per browser only the manage link is encoded into the article's JSON; the bytes are
    what encoding the browser's whole payload gives (a title holding the slot token too),
    and a shrunk push (a 413) is encoded anew."""
    import json

    from notifier.delivery.addressing import Addressee
    from notifier.messages import push_json

    composer = Composer(make_settings(tmp_path))
    news = Category(id=1, name="News", slug="news")
    story = Article(id=3, guid="g-3", link="https://aze.media/s", title=title, summary="Words " * 9,
                    image_url=None, published_at=datetime(2026, 1, 2, tzinfo=UTC),
                    first_seen_at=datetime(2026, 1, 2, tzinfo=UTC))  # fmt: skip
    story.categories = [news]
    for browser_id in (1, 22, 333):
        browser = SimpleNamespace(id=browser_id, endpoint="https://fcm.googleapis.com/x",
                                  p256dh="p", auth="a")  # fmt: skip
        delivery = SimpleNamespace(id=browser_id * 10)
        message = composer.push(Addressee(browser_id, story, browser, (news,), delivery))
        assert message.plaintext() == push_json(message.payload)
        assert json.loads(message.plaintext())["title"] == title
        manage = json.loads(message.plaintext())["manageUrl"]
        assert composer.urls.tokens.read_push_manage_token(manage.rsplit("/", 1)[1]) == browser_id
        shrunk = message.shrunk()
        assert shrunk.encoded is None and shrunk.plaintext() == push_json(shrunk.payload)


def test_envelopes_for_notices_taken_in_turns_each_carry_their_own_notice(session, composer):
    """The composer reuses the last notice's layouts; going back and forth between two
    notices (a batch with articles and alerts, say) still gives each reader their own."""
    first = make_delivery(session)
    second_article = Article(
        feed_id=session.get(Article, first.article_id).feed_id, guid="https://aze.media/?p=2",
        link="https://aze.media/gas/", title="Gas exports reach a record",
        summary="Pipelines ran full.", published_at=NOW, first_seen_at=NOW, announce=True,
        categories=categories(session, "energy", "news", "economy"),  # the same ones matched
    )  # fmt: skip
    session.add(second_article)
    session.flush()
    second = Delivery(article_id=second_article.id, subscriber_id=first.subscriber_id,
                      channel="email")  # fmt: skip
    session.add(second)
    session.flush()
    entries = dict(
        zip(("first", "second"),
            address_chunk(session, "email", SUBSCRIBERS, [first.id, second.id]), strict=True)
    )  # fmt: skip
    subjects = []
    for name in ("first", "second", "first", "second"):
        message = email.message_from_bytes(
            composer.email_envelope(entries[name]).data, policy=email.policy.default
        )
        subjects.append(str(message["Subject"]))
    assert subjects == ["Baku port traffic grows", "Gas exports reach a record"] * 2
