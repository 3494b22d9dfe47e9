"""The suppression list in Chromium at phone and desktop widths: an admin searches, opens a
suppressed address with its raw report, reveals it and removes it from suppression. Every
page: no serious or critical axe-core violation, no sideways scroll on a phone."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from notifier.db import session_scope
from notifier.domain.editors import create_editor
from notifier.domain.suppressions import suppress
from notifier.models import BounceKind, BounceReport, SuppressionReason
from notifier.timeutil import utcnow
from notifier.web import create_app
from tests import factories
from tests.browser.conftest import DESKTOP, PHONE, check_page
from tests.browser.test_workspace_pages import PASSWORD, log_in
from tests.conftest import make_settings
from tests.support.processes import web_server
from tests.support.smtp import free_port

RAW = "\r\n".join(
    ["From: MAILER-DAEMON@mx.example.net", "To: bounces+7.abcdef@bounces.aze.test",
     "Subject: Undelivered Mail Returned to Sender", "",
     "<a.very.long.address.that.must.wrap.on.a.phone@subdomain.example.com>: host "
     "mx.example.com said: 550 5.1.1 The email account that you tried to reach does not exist."]
)  # fmt: skip


@pytest.fixture
def live(tmp_path, pg_database_url):
    """The app over HTTP (no worker: nothing here is sent) with one suppressed reader."""
    port = free_port()
    settings = make_settings(tmp_path, DATABASE_URL=pg_database_url,
                             PUBLIC_URL=f"http://127.0.0.1:{port}")  # fmt: skip
    with session_scope(pg_database_url) as session:
        create_editor(session, "admin@aze.media", PASSWORD, "admin")
        email = "a.very.long.address.that.must.wrap.on.a.phone@subdomain.example.com"
        reader = factories.subscriber(session, email, "defense")
        report = BounceReport(received_at=utcnow(), source="listener", kind=BounceKind.HARD,
                              recipient=email, status="5.1.1", reason="550 5.1.1 does not exist",
                              digest="d" * 64, raw=RAW)  # fmt: skip
        session.add(report)
        session.flush()
        suppress(session, reader, SuppressionReason.HARD_BOUNCES, "listener",
                 "3 hard bounces, last: 5.1.1 does not exist", utcnow(),
                 report_id=report.id)  # fmt: skip
        session.commit()
    with web_server(create_app(settings), port) as url:
        yield url


@pytest.mark.parametrize("width", [PHONE, DESKTOP])
def test_an_admin_reviews_and_lifts_a_suppression(sized_browser, live, width):
    page = sized_browser.new_page()
    log_in(page, live, "admin@aze.media")
    nav = page.get_by_role("navigation", name="Workspace")
    nav.get_by_role("link", name="Suppressions").click()
    expect(page.locator("#suppressions")).to_contain_text("hard bounces")
    check_page(page, "ops-suppressions")
    page.fill("#q", "nobody-like-this")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#suppressions")).to_contain_text("No suppression matches")
    check_page(page, "ops-suppressions-none")
    page.goto(f"{live}/ops/suppressions/")
    page.locator("#suppressions a").first.click()
    expect(page.locator("#raw-report")).to_contain_text("550 5.1.1")
    expect(page.locator("#raw-report")).not_to_contain_text("must.wrap.on.a.phone")
    check_page(page, "ops-suppression")
    page.get_by_role("button", name="Reveal the address (this is logged)").click()
    expect(page.locator("#address")).to_contain_text("must.wrap.on.a.phone@subdomain")
    check_page(page, "ops-suppression-revealed")
    page.get_by_role("button", name="Remove from suppression").click()
    expect(page.get_by_role("status")).to_contain_text("Removed")
    expect(page.locator("#suppressions")).to_contain_text("No address is suppressed.")
    check_page(page, "ops-suppressions-lifted")
