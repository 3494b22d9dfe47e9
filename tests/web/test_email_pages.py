"""The web version of a notification email: the link in the email opens it, read-only, the
same page for every reader, with nothing personal on it and no script allowed."""

from __future__ import annotations

import re

from sqlalchemy import delete

from notifier.delivery.addressing import address_chunk
from notifier.delivery.compose import Composer
from notifier.delivery.routes import AUDIENCES
from notifier.domain.alerts import create_alert, validate_alert
from notifier.models import Article
from notifier.timeutil import utcnow
from tests import factories
from tests.support.queue import alert_fanned_out, article_fanned_out


def _sent_email(session, settings, notice_kind: str = "article"):
    """The email a reader of News got, rendered as the send path renders it."""
    reader = factories.subscriber(session, "reader@example.com", "news")
    session.commit()
    if notice_kind == "article":
        story = factories.article(session, "news", title="Manat holds <steady>")
        session.commit()
        _, ids = article_fanned_out(session, settings, story.id)
    else:
        draft = validate_alert(session, {"title": "Ceasefire", "body": "At dawn.",
                                         "channels": ["email"], "categories": ["news"]},
                               settings.site_url, utcnow())  # fmt: skip
        alert, _ = create_alert(session, draft, utcnow())
        session.commit()
        _, ids = alert_fanned_out(session, settings, alert.id)
    [entry] = address_chunk(session, "email", AUDIENCES["email"], ids)
    return reader, Composer(settings).email(entry)


def _view_path(rendered) -> str:
    url = re.search(r"Read this email in your browser: (\S+)", rendered.text).group(1)
    assert url.startswith("http://127.0.0.1:8000/email/")
    return url.removeprefix("http://127.0.0.1:8000")


def test_the_link_in_an_email_opens_its_web_version(client, session, settings):
    reader, rendered = _sent_email(session, settings)
    page = client.get(_view_path(rendered))
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert "Manat holds &lt;steady&gt;" in page.text and "Read the article" in page.text
    assert "The web version of an email from Aze.Media." in page.text
    assert reader.email not in page.text, "nothing personal"
    assert "/unsubscribe/" not in page.text and "/preferences/" not in page.text
    assert 'href="http://127.0.0.1:8000/manage"' in page.text
    assert "in your browser" not in page.text, "no link to itself"
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "style-src 'self' 'unsafe-inline'" in policy
    assert page.headers["X-Robots-Tag"] == "noindex"
    assert page.headers["Referrer-Policy"] == "same-origin"


def test_an_alert_has_one_too(client, session, settings):
    _, rendered = _sent_email(session, settings, "alert")
    page = client.get(_view_path(rendered))
    assert page.status_code == 200 and "Ceasefire" in page.text and "Breaking" in page.text


def test_a_forged_or_foreign_token_is_a_400_page(client, session, settings, app):
    _, rendered = _sent_email(session, settings)
    path = _view_path(rendered)
    assert client.get(path[:-4] + "abcd").status_code == 400
    tokens = app.extensions["notifier"]["tokens"]
    unsubscribe = tokens.unsubscribe_token(1, [1])  # signed, but for another purpose
    answer = client.get(f"/email/{unsubscribe}")
    assert answer.status_code == 400 and "This link does not work" in answer.text


def test_an_email_about_a_removed_article_says_so(client, session, settings):
    _, rendered = _sent_email(session, settings)
    session.execute(delete(Article))
    session.commit()
    answer = client.get(_view_path(rendered))
    assert answer.status_code == 404 and "no longer here" in answer.text


def test_it_changes_nothing_and_takes_no_post(client, session, settings):
    _, rendered = _sent_email(session, settings)
    assert client.post(_view_path(rendered)).status_code in (400, 405)
