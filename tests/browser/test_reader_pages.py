"""The reader's pages in Chromium at phone and desktop widths, with a real worker and real
SMTP: subscribe, send the link again, confirm from the email, change categories, pause and
resume, unsubscribe in one click from an article's email, resubscribe, the manage page after
an error, and browser notifications turned on step by step. Every page: axe-core finds no
violation at all (of any impact), a phone never scrolls sideways, and a screenshot goes to
test-output/screenshots/."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from notifier.celery_app import make_celery
from notifier.db import session_scope
from notifier.models import Article
from notifier.task_queue import TaskQueue
from notifier.web import create_app
from tests import factories
from tests.browser.conftest import (
    DESKTOP,
    FAKE_PUSH_ORIGIN,
    PHONE,
    FakeSubscription,
    check_page,
    set_notification_permission,
)
from tests.conftest import make_settings
from tests.support.processes import celery_processes, web_server
from tests.support.smtp import free_port

READER = "reader@example.com"


@pytest.fixture
def live(tmp_path, pg_database_url, redis_url, smtp):
    """The app over HTTP and a real Celery worker on Redis sending through real SMTP."""
    port = free_port()
    settings = make_settings(
        tmp_path, DATABASE_URL=pg_database_url, CELERY_BROKER_URL=redis_url, SMTP_URL=smtp.url,
        PUBLIC_URL=f"http://127.0.0.1:{port}", PUSH_ALLOWED_ORIGINS=FAKE_PUSH_ORIGIN,
    )  # fmt: skip
    with (
        web_server(create_app(settings), port) as url,
        celery_processes(settings, tmp_path, beat=False),
    ):
        yield url, settings


def _link(message, path: str) -> str:
    text = message.get_body(("plain",)).get_content()
    return re.search(rf"https?://\S+/{path}/\S+", text).group(0)


def _mails_to(smtp, count: int) -> list:
    smtp.handler.wait_for(count)
    return smtp.handler.to(READER)


def _publish(settings, database_url: str, title: str) -> int:
    """A new article in News, fanned out by the real worker (as a feed poll would)."""
    with session_scope(database_url) as session:
        story = factories.article(session, "news", title=title)
        session.commit()
        story_id = story.id
    TaskQueue(make_celery(settings)).fan_out_article(story_id)
    return story_id


def _wait_fanned_out(database_url: str, story_id: int, seconds: float = 30.0) -> None:
    """Until the worker has planned the article: what a pause leaves out is decided then."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with session_scope(database_url) as session:
            if session.get(Article, story_id).fanned_out_at is not None:
                return
        time.sleep(0.1)
    raise AssertionError(f"article {story_id} was not fanned out within {seconds} s")


@pytest.mark.parametrize("width", [PHONE, DESKTOP])
def test_a_reader_subscribes_confirms_changes_pauses_leaves_and_comes_back(
    sized_browser, live, smtp, pg_database_url, width
):
    url, settings = live
    page = sized_browser.new_page()
    page.goto(url + "/")
    check_page(page, "reader-subscribe", every_impact=True)
    page.get_by_label("News", exact=True).check()
    page.get_by_label("Economy").check()
    page.get_by_label("Email address").fill(READER)
    page.get_by_role("button", name="Subscribe by email").click()
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
    expect(page.locator("main")).to_contain_text(READER)
    check_page(page, "reader-check-inbox", every_impact=True)

    page.get_by_role("button", name="Send the link again").click()
    expect(page.get_by_role("status")).to_contain_text("on its way")
    check_page(page, "reader-check-inbox-resent", every_impact=True)
    confirmations = _mails_to(smtp, 2)
    assert len(confirmations) == 2, "the test settings let a second link go at once"

    page.goto(_link(confirmations[-1], "confirm"))
    expect(page.locator("main")).to_contain_text("Economy, News")
    check_page(page, "reader-confirm", every_impact=True)
    page.get_by_role("button", name="Yes, subscribe me").click()
    expect(page.get_by_role("heading", name="You are subscribed")).to_be_visible()
    check_page(page, "reader-confirmed", every_impact=True)

    page.get_by_role("link", name="Change your categories").click()
    check_page(page, "reader-preferences", every_impact=True)
    page.get_by_label("Economy").select_option("off")
    page.get_by_label("Culture").select_option("instant")
    page.get_by_role("button", name="Save categories").click()
    expect(page.get_by_role("status")).to_have_text("Saved.")
    expect(page.get_by_label("Culture")).to_have_value("instant")
    page.get_by_role("button", name="Pause all email for 7 days").click()
    expect(page.get_by_role("status")).to_contain_text("Email is paused for 7 days")
    expect(page.locator(".lead")).to_contain_text("email paused until")
    check_page(page, "reader-preferences-paused", every_impact=True)

    away = _publish(settings, pg_database_url, "While you were away")
    _wait_fanned_out(pg_database_url, away)  # published and planned during the pause
    page.get_by_role("button", name="Resume email now").click()
    expect(page.get_by_role("status")).to_contain_text("Email is on again")
    _publish(settings, pg_database_url, "Welcome back story")
    mails = _mails_to(smtp, 3)
    subjects = [m["Subject"] for m in mails]
    assert subjects[-1] == "Welcome back story" and "While you were away" not in subjects

    unsubscribe = mails[-1]["List-Unsubscribe"].strip("<>")
    page.goto(unsubscribe)
    check_page(page, "reader-unsubscribe", every_impact=True)
    page.get_by_role("button", name="Unsubscribe from News").click()
    expect(page.get_by_role("heading", name="You are unsubscribed")).to_be_visible()
    expect(page.locator("main")).to_contain_text("still gets: Culture")
    check_page(page, "reader-unsubscribed", every_impact=True)
    page.get_by_role("button", name="Resubscribe").click()
    expect(page.get_by_role("heading", name="Welcome back")).to_be_visible()
    expect(page.locator("main")).to_contain_text("Culture, News again")
    check_page(page, "reader-resubscribed", every_impact=True)

    page.goto(url + "/manage")
    check_page(page, "reader-manage", every_impact=True)
    page.get_by_label("Email address").fill("reader@localhost")  # the browser takes it; we not
    page.get_by_role("button", name="Email me a link").click()
    expect(page.locator("#email-error")).to_contain_text("not valid")
    expect(page.get_by_label("Email address")).to_have_value("reader@localhost")
    check_page(page, "reader-manage-error", every_impact=True)

    page.goto(url + "/unsubscribe/not-a-real-token")
    expect(page.get_by_role("heading", name="This link does not work")).to_be_visible()
    check_page(page, "reader-bad-link", every_impact=True)


# Holds pushManager.subscribe() until the test lets it go, as a slow push service would.
SLOW_SUBSCRIBE_JS = """
(() => {
  const subscribe = PushManager.prototype.subscribe;
  let release;
  const released = new Promise((resolve) => { release = resolve; });
  window.releasePushService = () => release();
  PushManager.prototype.subscribe = function (options) {
    return released.then(() => subscribe.call(this, options));
  };
})();
"""


@pytest.mark.parametrize("width", [PHONE, DESKTOP])
def test_turning_browser_notifications_on_says_what_it_waits_for(sized_browser, live, width):
    url, _ = live
    fake = FakeSubscription.make()
    sized_browser.add_init_script(fake.init_script())
    sized_browser.add_init_script(SLOW_SUBSCRIBE_JS)
    sized_browser.grant_permissions(["notifications"], origin=url)
    page = sized_browser.new_page()
    page.goto(url + "/")
    push = page.locator("#push")
    expect(push.locator("[data-push-state]")).to_contain_text("off in this browser")
    page.get_by_label("Science").check()
    page.get_by_role("button", name="Turn on browser notifications").click()

    live_region = push.get_by_role("status")
    expect(live_region).to_contain_text("Registering this browser with its push service")
    expect(push.get_by_role("button", name="Turn on browser notifications")).to_be_disabled()
    check_page(page, "reader-push-registering", every_impact=True)
    page.evaluate("window.releasePushService()")
    expect(live_region).to_contain_text("Done: this browser will show a notification")
    expect(push.locator("[data-push-state]")).to_contain_text("subscribed to Science")
    check_page(page, "reader-push-on", every_impact=True)

    manage_url = page.evaluate(
        "async (endpoint) => (await (await fetch('/api/v1/push/subscriptions/lookup', {"
        " method: 'POST', headers: {'Content-Type': 'application/json'},"
        " body: JSON.stringify({endpoint}) })).json()).manageUrl",
        fake.endpoint,
    )
    page.goto(manage_url)  # the page every push links to
    expect(page.get_by_label("Science")).to_be_checked()
    check_page(page, "reader-push-manage", every_impact=True)
    page.get_by_label("From").select_option("22")
    page.get_by_label("Until").select_option("7")
    page.get_by_label("Time zone").select_option("Asia/Baku")
    page.get_by_role("button", name="Save quiet hours").click()
    expect(page.get_by_role("status")).to_contain_text("no notifications from 22:00 to 07:00")
    check_page(page, "reader-push-quiet-hours", every_impact=True)


@pytest.mark.parametrize("width", [PHONE, DESKTOP])
def test_a_refusal_is_said_in_plain_words(sized_browser, live, width):
    url, _ = live
    page = sized_browser.new_page()
    page.goto(url + "/")
    page.get_by_label("News", exact=True).check()
    set_notification_permission(page, url, "denied")  # the reader answers "Block"
    page.get_by_role("button", name="Turn on browser notifications").click()
    push = page.locator("#push")
    expect(push.get_by_role("status")).to_contain_text("You did not allow notifications")
    expect(push.locator("[data-push-state]")).to_contain_text("blocked for this site")
    check_page(page, "reader-push-refused", every_impact=True)
