"""Our pages under their Content-Security-Policy in Chromium: nothing is refused, and the
scripts that moved out of the pages into static files (alert progress) still run."""

from __future__ import annotations

from playwright.sync_api import expect

from notifier.db import session_scope
from notifier.domain.editors import create_editor
from notifier.models import Alert

PASSWORD = "correct horse battery"


def test_e_pages_run_under_their_policy_with_nothing_refused(browser, notifier, pg_database_url):
    with session_scope(pg_database_url) as session:
        create_editor(session, "admin@aze.media", PASSWORD, "admin")
        alert = Alert(title="Ceasefire signed", url="https://aze.media/", target_all=True)
        session.add(alert)
        session.commit()
        alert_id = alert.id
    page = browser.new_page()
    refused: list[str] = []
    page.on("console", lambda message: refused.append(message.text)
            if "Content Security Policy" in message.text else None)  # fmt: skip

    page.goto(notifier.url + "/")
    expect(page.locator("#push")).to_be_visible()  # push.js ran
    page.goto(notifier.url + "/editor/login")
    page.fill("#email", "admin@aze.media")
    page.fill("#password", PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="Log in").click()
    page.goto(notifier.url + "/editor/alerts/new")
    page.fill("#title", "Ceasefire signed")
    with page.expect_navigation():
        page.get_by_role("button", name="Preview").click()
    email = page.frame_locator("iframe.preview")
    expect(email.get_by_text("Ceasefire signed").first).to_be_visible()

    with page.expect_request(f"**/editor/alerts/{alert_id}/progress"):
        page.goto(f"{notifier.url}/editor/alerts/{alert_id}")  # alert-progress.js polls
    assert refused == []
