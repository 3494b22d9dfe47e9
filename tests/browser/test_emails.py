"""Every kind of email, rendered by the send path, loaded in Chromium at phone and desktop
widths in light and dark mode, and the web version the emails link to, served by the app:
axe-core finds no violation of any impact, a phone never scrolls sideways, the preheader is
hidden, dark mode is dark, and a screenshot of each goes to test-output/screenshots/."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from notifier.db import session_scope
from notifier.delivery.addressing import address_chunk
from notifier.delivery.compose import Composer
from notifier.delivery.routes import AUDIENCES
from notifier.domain.alerts import create_alert, validate_alert
from notifier.models import Article, Category
from notifier.timeutil import utcnow
from notifier.web import create_app
from tests import factories
from tests.browser.conftest import DESKTOP, PHONE, PROJECT, check_page
from tests.conftest import make_settings
from tests.support.processes import web_server
from tests.support.queue import alert_fanned_out, article_fanned_out
from tests.support.smtp import free_port
from tests.web.conftest import RecordingQueue

MAILBOX = "http://mailbox.test"  # where the rendered emails are "opened"
IMAGE = (PROJECT / "static" / "icon-192.png").read_bytes()  # stands in for article images


def _render_every_kind(settings, database_url: str) -> dict[str, str]:
    """kind -> the HTML a reader receives, made by the send path from real rows."""
    composer = Composer(settings)
    with session_scope(database_url) as session:
        reader = factories.subscriber(session, "reader@example.com", "news", "economy")
        story = factories.article(session, "news", "economy", title="Manat holds steady as oil "
                                  "prices climb for a third week")  # fmt: skip
        story.image_url = "https://cdn.aze.media/manat.jpg"
        session.commit()
        _, article_ids = article_fanned_out(session, settings, story.id)
        draft = validate_alert(session, {"title": "Ceasefire signed at the border",
                                         "body": "Both sides agreed to stop at midnight.",
                                         "image_url": "https://cdn.aze.media/border.jpg",
                                         "channels": ["email"], "categories": ["news"]},
                               settings.site_url, utcnow())  # fmt: skip
        alert, _ = create_alert(session, draft, utcnow())
        session.commit()
        _, alert_ids = alert_fanned_out(session, settings, alert.id)
        [article] = address_chunk(session, "email", AUDIENCES["email"], article_ids)
        [breaking] = address_chunk(session, "email", AUDIENCES["email"], alert_ids)
        news = [c.id for c in session.query(Category).filter(Category.slug == "news")]
        emails = {
            "article": composer.email(article),
            "alert": composer.email(breaking),
            "confirm": composer.confirmation_email(session, reader.id, news),
            "manage_link": composer.manage_link_email(session, reader.id),
        }
        assert session.query(Article).count() == 1
    return {kind: rendered for kind, rendered in emails.items()}


@pytest.fixture
def rendered(tmp_path, pg_database_url):
    port = free_port()
    settings = make_settings(tmp_path, DATABASE_URL=pg_database_url,
                             PUBLIC_URL=f"http://127.0.0.1:{port}")  # fmt: skip
    emails = _render_every_kind(settings, pg_database_url)
    with web_server(create_app(settings, queue=RecordingQueue()), port) as url:
        yield url, emails


def _serve(page, emails) -> None:
    def answer(route) -> None:
        url = route.request.url
        if url.startswith(MAILBOX):
            kind = url.rsplit("/", 1)[1]
            route.fulfill(body=emails[kind].html, content_type="text/html; charset=utf-8")
        elif url.startswith("https://"):
            route.fulfill(body=IMAGE, content_type="image/png")
        else:
            route.continue_()

    page.route("**/*", answer)


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", [PHONE, DESKTOP])
def test_every_email_reads_well_in_light_and_dark(sized_browser, rendered, width, scheme):
    url, emails = rendered
    page = sized_browser.new_page()
    page.emulate_media(color_scheme=scheme)
    _serve(page, emails)
    background = "rgb(17, 24, 39)" if scheme == "dark" else "rgb(243, 244, 246)"
    for kind in emails:
        page.goto(f"{MAILBOX}/{kind}")
        expect(page.locator("body")).to_have_css("background-color", background)
        expect(page.locator(".preheader")).to_be_hidden()
        check_page(page, f"email-{kind}-{scheme}", every_impact=True)

    view = re.search(r"in your browser: (\S+)", emails["article"].text).group(1)
    assert view.startswith(url)
    page.goto(view)
    expect(page.get_by_role("link", name="Read the article")).to_be_visible()
    expect(page.locator("body")).to_have_css("background-color", background)
    check_page(page, f"email-web-version-{scheme}", every_impact=True)
