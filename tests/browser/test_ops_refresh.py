"""The ops dashboard in Chromium shows fresh figures by itself, and leaves a page alone
while someone is using one of its controls."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from notifier.celery_app import make_celery
from notifier.db import session_scope
from notifier.domain.editors import create_editor
from notifier.models import WorkerHeartbeat
from notifier.timeutil import utcnow
from notifier.web import create_app
from tests.conftest import make_settings
from tests.support.processes import web_server
from tests.support.smtp import free_port
from tests.web.conftest import RecordingQueue

PASSWORD = "correct horse battery"


@pytest.fixture
def ops_site(tmp_path, pg_database_url, redis_url):
    port = free_port()
    settings = make_settings(
        tmp_path, DATABASE_URL=pg_database_url, CELERY_BROKER_URL=redis_url,
        PUBLIC_URL=f"http://127.0.0.1:{port}",
        OPS_REFRESH_SECONDS="1",  # the default 10 s would only make the test slower
    )  # fmt: skip
    with session_scope(pg_database_url) as session:
        create_editor(session, "admin@aze.media", PASSWORD, "admin")
        session.commit()
    app = create_app(settings, queue=RecordingQueue(make_celery(settings)))
    with web_server(app, port) as url:
        yield url, pg_database_url


def test_the_dashboard_shows_a_new_worker_without_a_reload(browser, ops_site):
    url, database_url = ops_site
    page = browser.new_page()
    page.goto(f"{url}/editor/login?next=/ops/")
    page.fill("#email", "admin@aze.media")
    page.fill("#password", PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="Log in").click()
    expect(page.locator("#workers")).to_contain_text("No worker has reported")
    page.evaluate("() => { window.sameDocument = true; }")
    now = utcnow()
    with session_scope(database_url) as session:
        session.add(WorkerHeartbeat(hostname="celery@late", seen_at=now, started_at=now,
                                    concurrency=2, active_tasks=0, pid=1))  # fmt: skip
        session.commit()
    expect(page.locator("#workers")).to_contain_text("celery@late")
    assert page.evaluate("() => window.sameDocument") is True  # updated in place
