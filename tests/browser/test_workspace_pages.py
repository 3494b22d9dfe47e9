"""The editors' and ops workspace in Chromium at phone and desktop widths, with a real worker:
an editor logs in, previews, sends a test, sends an alert and watches it reach "sent"; an admin
sees the running worker on the dashboard. Every page: axe-core finds no serious or critical
violation, a phone never scrolls sideways, a screenshot goes to test-output/screenshots/."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from notifier.db import session_scope
from notifier.domain.editors import create_editor
from notifier.web import create_app
from tests import factories
from tests.browser.conftest import DESKTOP, PHONE, check_page
from tests.conftest import make_settings
from tests.support.processes import celery_processes, web_server
from tests.support.smtp import free_port

PASSWORD = "correct horse battery"


@pytest.fixture
def live(tmp_path, pg_database_url, redis_url, smtp):
    """The app over HTTP and a real Celery worker on Redis sending through real SMTP."""
    port = free_port()
    settings = make_settings(
        tmp_path, DATABASE_URL=pg_database_url, CELERY_BROKER_URL=redis_url, SMTP_URL=smtp.url,
        PUBLIC_URL=f"http://127.0.0.1:{port}",
    )  # fmt: skip
    with session_scope(pg_database_url) as session:
        create_editor(session, "editor@aze.media", PASSWORD, "editor")
        create_editor(session, "admin@aze.media", PASSWORD, "admin")
        for n in range(3):
            factories.subscriber(session, f"reader{n}@example.com", "defense")
        session.commit()
    with (
        web_server(create_app(settings), port) as url,
        celery_processes(settings, tmp_path, beat=False),
    ):
        yield url


def log_in(page, url: str, email: str) -> None:
    page.goto(f"{url}/editor/login")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="Log in").click()


def press(button) -> None:
    """Click a button below the email preview. The preview is a sandboxed iframe, which
    Chromium runs in a process of its own; the browser process routes a click to a frame by
    the last frame the compositor drew. A click made at once after a scroll (as Playwright
    does when the button is out of view) is routed by the picture from before the scroll,
    lands in the iframe, and the form is never sent (about one click in four at 390 px).
    So: scroll, let two frames be drawn, then click."""
    button.scroll_into_view_if_needed()
    button.evaluate(
        "() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))"
    )
    button.click()


@pytest.mark.parametrize("width", [PHONE, DESKTOP])
def test_an_editor_sends_an_alert_and_an_admin_watches(sized_browser, live, smtp, width):
    page = sized_browser.new_page()
    page.goto(f"{live}/editor/login")
    check_page(page, "editor-login")
    log_in(page, live, "editor@aze.media")
    check_page(page, "editor-home")
    nav = page.get_by_role("navigation", name="Workspace")
    expect(nav.get_by_role("button", name="Log out")).to_be_visible()
    expect(nav.get_by_role("link", name="Dashboard")).to_have_count(0)  # admins only

    nav.get_by_role("link", name="Compose").click()
    page.fill("#title", "Breaking: Ceasefire signed")
    page.fill("#body", "Both sides agreed to stop at midnight.")
    page.get_by_label("Readers of these categories:").check()
    page.get_by_label("Defense").check()
    page.get_by_label("At", exact=True).check()  # and no time: refused next to the field
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#send_at-error")).to_have_text(
        "Choose the date and time to send at, or choose Now."
    )
    check_page(page, "editor-compose-error")
    page.get_by_label("Now").check()
    page.get_by_role("button", name="Preview").click()
    send = page.get_by_role("button", name="Send now to 3 readers by email and 0 browsers by push")
    expect(send).to_be_visible()
    expect(page.get_by_role("heading", name="Email: Breaking: Ceasefire signed")).to_be_visible()
    email = page.frame_locator("iframe.preview")
    expect(email.get_by_role("link", name="Breaking: Ceasefire signed")).to_be_visible()
    check_page(page, "editor-preview")

    press(page.get_by_role("button", name="Send a test to me"))
    expect(page.get_by_role("status")).to_have_text("A test went to editor@aze.media only.")
    test_mail = smtp.handler.wait_for(1)[0].message
    assert test_mail["To"] == "editor@aze.media"
    assert test_mail["Subject"] == "Breaking: Ceasefire signed"
    check_page(page, "editor-preview-test-sent")

    press(page.get_by_role("button", name="Send now to 3 readers by email"))
    expect(page.locator("#status")).to_have_text("sent", timeout=60_000)  # alert-progress.js
    expect(page.locator('tr[data-channel="email"] td[data-key="sent"]')).to_have_text("3")
    check_page(page, "editor-alert-sent")
    nav.get_by_role("link", name="Alerts").click()
    expect(page.get_by_role("link", name="Breaking: Ceasefire signed")).to_be_visible()
    check_page(page, "editor-alert-history")

    with page.expect_navigation():
        nav.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Editor login")).to_be_visible()
    admin = page
    log_in(admin, live, "admin@aze.media")
    admin.get_by_role("navigation", name="Workspace").get_by_role("link", name="Dashboard").click()
    expect(admin.locator("#workers")).to_contain_text("online")
    expect(admin.locator("#traffic td[data-outcome='sent']").first).to_have_text("3")
    check_page(admin, "ops-dashboard")
    for link, name in (("Editors", "admin-editors"), ("Tokens", "admin-tokens")):
        admin.get_by_role("navigation", name="Workspace").get_by_role("link", name=link).click()
        check_page(admin, name)
