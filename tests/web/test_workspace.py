"""The editors' and ops workspace: its own layout and navigation, times in SITE_TIMEZONE,
plain-word errors next to their field, scheduled alerts listed as scheduled."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from notifier.domain.editors import create_editor
from notifier.models import Alert
from notifier.timeutil import utcnow
from tests import factories
from tests.web.conftest import logged_in_client
from tests.web.test_editor_alerts import form

EDITOR_PAGES = ["/editor/", "/editor/alerts/new", "/editor/alerts/"]
ADMIN_PAGES = ["/ops/", "/editor/admin/editors", "/editor/admin/tokens"]


@pytest.fixture
def admin_client(app, session):
    admin = create_editor(session, "admin@aze.media", "correct horse battery", "admin")
    session.commit()
    return logged_in_client(app, admin)


def nav(page: str) -> str:
    return re.search(r'<nav class="ws-nav".*?</nav>', page, re.S).group(0)


@pytest.mark.parametrize("path", EDITOR_PAGES)
def test_editor_pages_have_the_workspace_navigation_and_log_out(editor_client, path):
    page = editor_client.get(path).text
    links = nav(page)
    for href in ('href="/editor/alerts/new"', 'href="/editor/alerts/"'):
        assert href in links
    for admin_only in ("/ops/", "/editor/admin/editors", "/editor/admin/tokens"):
        assert admin_only not in links, "admin-only links are for admins"
    assert 'action="/editor/logout"' in links and ">Log out</button>" in links
    assert "Manage my subscription" not in page, "no reader footer in the workspace"
    assert "<title>" in page and "· Aze.Media</title>" in page


@pytest.mark.parametrize("path", EDITOR_PAGES + ADMIN_PAGES)
def test_admins_see_every_workspace_link(admin_client, path):
    links = nav(admin_client.get(path).text)
    for href in ("/editor/alerts/new", "/editor/alerts/", "/ops/", "/editor/admin/editors",
                 "/editor/admin/tokens", "/editor/logout"):  # fmt: skip
        assert f'"{href}"' in links
    assert path == "/editor/" or 'aria-current="page"' in links


def test_login_page_has_no_navigation(client):
    page = client.get("/editor/login").text
    assert 'class="ws-nav"' not in page and "Manage my subscription" not in page


def test_a_scheduled_alert_shows_its_time_in_the_site_zone_everywhere(
    editor_client, admin_client, session
):
    # SITE_TIMEZONE is Asia/Baku (UTC+4) by default: 09:00 there is 05:00 UTC.
    data = form(editor_client, when="later", send_at="2030-03-01T09:00")
    preview = editor_client.post("/editor/alerts/preview", data=data).text
    assert "1 Mar 2030, 09:00 Asia/Baku" in preview
    location = editor_client.post("/editor/alerts/", data=data).headers["Location"]
    [alert] = session.scalars(select(Alert)).all()
    assert alert.send_at == datetime(2030, 3, 1, 5, 0, tzinfo=UTC)
    shown = editor_client.get(location).text
    assert "goes out <time" in shown and "1 Mar 2030, 09:00 Asia/Baku</time>" in shown
    history = editor_client.get("/editor/alerts/").text
    assert 'datetime="2030-03-01T05:00:00+00:00"' in history
    assert "1 Mar 2030, 09:00 Asia/Baku" in history
    assert not re.search(r">[^<]*05:00", history), "UTC shown only in the machine-readable form"
    dashboard = admin_client.get("/ops/").text
    in_progress = dashboard.split('id="progress"')[1].split("</table>")[0]
    scheduled = dashboard.split('id="scheduled"')[1].split("</table>")[0]
    assert "Ceasefire signed" not in in_progress and "Nothing is going out" in in_progress
    assert "Ceasefire signed" in scheduled and "1 Mar 2030, 09:00 Asia/Baku" in scheduled


def test_an_alert_going_out_is_in_progress_not_scheduled(admin_client, editor_client, session):
    editor_client.post("/editor/alerts/", data=form(editor_client, idempotency_key="now"))
    dashboard = admin_client.get("/ops/").text
    assert "Ceasefire signed" in dashboard.split('id="progress"')[1].split("</table>")[0]
    assert "No alert is scheduled." in dashboard.split('id="scheduled"')[1]


def test_at_without_a_time_is_refused_next_to_the_field_not_sent_now(editor_client, session, queue):
    data = form(editor_client, when="later", send_at="")
    for path in ("/editor/alerts/preview", "/editor/alerts/"):
        answer = editor_client.post(path, data=data)
        assert answer.status_code == 400
        assert re.search(
            r'<input id="send_at"[^>]*aria-invalid="true" aria-describedby="send_at-error">\s*'
            r'</fieldset>\s*<p class="field-error" id="send_at-error" role="alert">'
            r"Choose the date and time to send at, or choose Now.</p>", answer.text
        )  # fmt: skip
    assert session.scalars(select(Alert)).all() == [] and queue.alerts == []


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [({"when": "later", "send_at": "2020-01-01T09:00"}, "send_at",
      "That time is already in the past. Choose a later time, or send now."),
     ({"categories": []}, "categories", "Choose at least one category, or send to all readers."),
     ({"channels": []}, "channels", "Choose email, browser push or both."),
     ({"url": "javascript:alert(1)"}, "url", "The link must be a web address starting with")],
)  # fmt: skip
def test_errors_are_plain_words_next_to_their_field(editor_client, fields, field, words):
    answer = editor_client.post("/editor/alerts/preview", data=form(editor_client, **fields))
    assert answer.status_code == 400
    shown = re.search(rf'<p class="field-error" id="{field}-error" role="alert">([^<]*)</p>',
                      answer.text)  # fmt: skip
    assert shown and words in shown.group(1)
    for internal in ("send_at", "slug", "http(s)", "ISO"):
        assert internal not in shown.group(1)


def test_counts_are_plural_correct(editor_client, session, push_service):
    factories.subscriber(session, "a@example.com", "defense")
    factories.push_subscription(session, push_service.new_subscription(), "defense")
    factories.push_subscription(session, push_service.new_subscription(), "defense")
    factories.push_subscription(session, push_service.new_subscription(), "defense")
    session.commit()
    page = editor_client.post("/editor/alerts/preview", data=form(editor_client)).text
    assert '<td data-reach="email">1 reader</td>' in page
    assert "Send now to 1 reader by email and 3 browsers by push" in page
    assert "1 readers" not in page and "1 browsers" not in page


def test_a_breaking_headline_is_not_prefixed_twice(editor_client):
    data = form(editor_client, title="Breaking: Ceasefire signed")
    page = editor_client.post("/editor/alerts/preview", data=data).text
    assert "Email: Breaking: Ceasefire signed" in page and "Breaking: Breaking" not in page


def test_ops_dashboard_times_carry_the_zone(admin_client, session):
    from notifier.models import WorkerHeartbeat

    now = utcnow()
    session.add(WorkerHeartbeat(hostname="celery@a", seen_at=now, started_at=now,
                                concurrency=2, active_tasks=0, pid=1))  # fmt: skip
    session.commit()
    page = admin_client.get("/ops/").text
    workers = page.split('id="workers"')[1].split("</table>")[0]
    assert re.search(r'<time datetime="[^"]+" class="when">\d{1,2} \w{3} \d{4}, \d\d:\d\d '
                     r"Asia/Baku</time>", workers)  # fmt: skip
    assert not re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d", page), "one date format"


def test_the_ops_dashboard_refreshes_itself(admin_client):
    page = admin_client.get("/ops/").text
    assert 'id="as-of" data-refresh-ms="10000"' in page  # OPS_REFRESH_SECONDS, 10 by default
    assert '<script src="/static/ops-refresh.js" defer></script>' in page
    assert '<noscript><meta http-equiv="refresh" content="10"></noscript>' in page
