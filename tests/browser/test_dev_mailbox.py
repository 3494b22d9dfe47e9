"""The development mailbox in Chromium: new mail appears without a reload by hand, and a
link clicked in the previewed email opens a new tab instead of loading inside the frame."""

from __future__ import annotations

from email.message import EmailMessage

import pytest
from playwright.sync_api import expect

from notifier.channels.dev_mailbox import DevMailboxChannel
from notifier.web import create_app
from tests.conftest import make_settings
from tests.support.processes import web_server
from tests.support.smtp import free_port
from tests.web.conftest import RecordingQueue


@pytest.fixture
def dev_site(tmp_path, pg_database_url):
    port = free_port()
    settings = make_settings(tmp_path, DATABASE_URL=pg_database_url, NOTIFIER_DEV="1",
                             PUBLIC_URL=f"http://127.0.0.1:{port}")  # fmt: skip
    with web_server(create_app(settings, queue=RecordingQueue()), port) as url:
        yield url, settings


def deliver(settings, subject: str, link: str) -> None:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "news@aze.test", "r@example.com", subject
    message.set_content(f"Read it: {link}")
    message.add_alternative(f'<p><a href="{link}">Read the story</a></p>', subtype="html")
    box = DevMailboxChannel(settings.dev_mailbox_dir).open()
    box.send(message)
    box.close()


def test_new_mail_shows_up_and_links_open_in_a_new_tab(browser, dev_site):
    url, settings = dev_site
    page = browser.new_page()
    page.goto(f"{url}/dev/mailbox")
    expect(page.get_by_text("No messages yet")).to_be_visible()
    deliver(settings, "Confirm your subscription", f"{url}/healthz")
    expect(page.get_by_role("link", name="Confirm your subscription")).to_be_visible()

    page.get_by_role("link", name="Confirm your subscription").click()
    frame = page.frame_locator("iframe.preview")
    with browser.expect_page() as opened:
        frame.get_by_role("link", name="Read the story").click()
    new_tab = opened.value
    new_tab.wait_for_load_state()
    assert new_tab.url == f"{url}/healthz"
    assert page.url.startswith(f"{url}/dev/mailbox/")  # the mailbox stays where it was
    assert page.frames[1].url == "about:srcdoc"  # and nothing loaded inside the frame
