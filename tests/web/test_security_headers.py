"""Every page is unframeable, unsniffable and scripted only from our own files."""

from __future__ import annotations

import pytest

from notifier.web import create_app
from tests.conftest import make_settings
from tests.web.test_editor_alerts import form

PAGES = ["/", "/manage", "/editor/login", "/api/v1/categories", "/static/site.css", "/nope"]


@pytest.mark.parametrize("path", PAGES)
def test_every_response_carries_the_hardening_headers(client, path):
    answer = client.get(path)
    answer.close()  # static files are streamed
    headers = answer.headers
    policy = headers["Content-Security-Policy"]
    assert "script-src 'self';" in policy and "style-src 'self';" in policy
    assert "frame-ancestors 'none'" in policy and "unsafe-inline" not in policy
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"
    assert "Strict-Transport-Security" not in headers, "not under a plain-http PUBLIC_URL"


def test_pages_hold_no_inline_script_or_style(client, editor_client):
    """What the policy would block must not be in the pages either."""
    for page in (client.get("/").text, client.get("/editor/login").text,
                 editor_client.get("/editor/alerts/new").text):  # fmt: skip
        assert "<script>" not in page and " style=" not in page and " onsubmit=" not in page


def test_an_email_preview_allows_inline_styles_and_still_no_script(editor_client):
    answer = editor_client.post("/editor/alerts/preview", data=form(editor_client))
    assert answer.status_code == 200 and "<iframe" in answer.text
    policy = answer.headers["Content-Security-Policy"]
    assert "style-src 'self' 'unsafe-inline'" in policy and "script-src 'self';" in policy


def test_https_public_url_adds_hsts(tmp_path, database_url, queue):
    settings = make_settings(tmp_path, DATABASE_URL=database_url,
                             PUBLIC_URL="https://notify.aze.media")  # fmt: skip
    answer = create_app(settings, queue=queue).test_client().get("/")
    assert answer.headers["Strict-Transport-Security"].startswith("max-age=31536000")
