"""The subscribe page's browser notifications, and notifier's own service worker, in Chromium."""

from __future__ import annotations

import json

import requests
from playwright.sync_api import expect

from tests.browser.conftest import (
    FakeSubscription,
    deliver_push,
    register_service_worker,
    set_notification_permission,
    wait_for_notifications,
)
from tests.support.processes import wait_until


def _ready_page(browser, notifier, permission: bool = True):
    if permission:
        browser.grant_permissions(["notifications"], origin=notifier.url)
    page = browser.new_page()
    page.goto(notifier.url + "/")
    return page


def test_a_push_payload_becomes_a_notification_with_the_article_link(browser, notifier):
    page = _ready_page(browser, notifier)
    register_service_worker(page, "/sw.js")
    payload = {
        "title": "Baku and London stake on “green” energy",
        "body": "Investment triumph on the banks of the Thames.",
        "icon": notifier.url + "/static/icon-192.png",
        "image": None,
        "url": "https://aze.media/investment-triumph/",
        "tag": "article-42",
        "manageUrl": notifier.url + "/push/manage/abc",
        "timestamp": 1_656_000_000_000,
    }

    def deliver() -> None:
        deliver_push(page, notifier.url + "/", json.dumps(payload))

    deliver()
    [shown] = wait_for_notifications(page, notifier.url + "/", redeliver=deliver)
    assert shown["title"] == payload["title"]
    assert shown["body"] == payload["body"]
    assert shown["tag"] == "article-42"
    assert shown["icon"] == payload["icon"]
    assert shown["image"] == ""  # null is left out, not turned into the URL "null"
    assert shown["timestamp"] == payload["timestamp"]
    assert shown["renotify"] is False
    assert shown["data"]["url"] == "https://aze.media/investment-triumph/"
    assert shown["data"]["manageUrl"] == payload["manageUrl"]
    assert shown["actions"] == [{"action": "manage", "title": "Manage notifications"}]


def test_b_a_push_without_usable_json_still_shows_a_notification(browser, notifier):
    page = _ready_page(browser, notifier)
    register_service_worker(page, "/sw.js")
    scope = notifier.url + "/"

    deliver_push(page, scope, "this is not JSON")
    [plain] = wait_for_notifications(page, scope, 1)
    assert plain["title"] == "New article"
    assert plain["body"] == "this is not JSON"
    assert plain["data"]["url"] == scope

    deliver_push(page, scope, '{"title": 42, "url": "javascript:alert(1)"}')
    shown = wait_for_notifications(page, scope, 2)
    odd = next(n for n in shown if n["body"] != "this is not JSON")
    assert odd["title"] == "New article"
    assert odd["data"]["url"] == scope  # never a javascript: URL
    assert odd["actions"] == []  # no manageUrl, no "manage" button


def test_c_subscribe_change_and_turn_off(browser, notifier, fake_subscription):
    browser.add_init_script(fake_subscription.init_script())
    page = _ready_page(browser, notifier)
    section = page.locator("#push")
    state = section.locator("[data-push-state]")
    expect(section).to_be_visible()
    expect(state).to_contain_text("off in this browser")
    assert notifier.subscribed_slugs(fake_subscription.endpoint) is None

    posted = []
    page.on(
        "request",
        lambda r: (
            posted.append(r.post_data_json)
            if r.method == "POST" and r.url.endswith("/api/v1/push/subscriptions")
            else None
        ),
    )
    page.get_by_label("Economy").check()
    page.get_by_label("News", exact=True).check()
    section.get_by_role("button", name="Turn on browser notifications").click()

    expect(state).to_contain_text("subscribed to Economy, News")
    assert notifier.subscribed_slugs(fake_subscription.endpoint) == ["economy", "news"]
    assert posted[0]["categories"] == ["economy", "news"]
    zone = page.evaluate("Intl.DateTimeFormat().resolvedOptions().timeZone")
    assert posted[0]["timezone"] == zone, "quiet hours and the daily cap are in its time zone"
    assert posted[0]["subscription"]["keys"] == {
        "p256dh": fake_subscription.p256dh,
        "auth": fake_subscription.auth,
    }
    worker = page.evaluate(
        "async () => (await navigator.serviceWorker.getRegistration('/')).active.scriptURL"
    )
    assert worker == notifier.url + "/sw.js"

    # A reload shows the state found through getSubscription() + the lookup API.
    page.reload()
    expect(state).to_contain_text("subscribed to Economy, News")
    expect(page.get_by_label("Economy")).to_be_checked()

    page.get_by_label("Economy").uncheck()
    page.get_by_label("Science").check()
    section.get_by_role("button", name="Save categories").click()
    expect(state).to_contain_text("subscribed to News, Science")
    assert notifier.subscribed_slugs(fake_subscription.endpoint) == ["news", "science"]

    section.get_by_role("button", name="Turn off").click()
    expect(state).to_contain_text("off in this browser")
    expect(section.get_by_role("status")).to_contain_text("Browser notifications are off")
    assert notifier.subscribed_slugs(fake_subscription.endpoint) is None
    assert page.evaluate("localStorage.getItem('fake-push-unsubscribed')")


def test_c_server_refusal_is_shown_in_the_live_region(browser, notifier, fake_subscription):
    fake_subscription.endpoint = "https://push.evil.example/push/1"  # not an allowed origin
    browser.add_init_script(fake_subscription.init_script())
    page = _ready_page(browser, notifier)
    section = page.locator("#push")
    section.get_by_role("button", name="Turn on browser notifications").click()
    expect(section.get_by_role("status")).to_contain_text("Tick at least one category")

    page.get_by_label("News", exact=True).check()
    section.get_by_role("button", name="Turn on browser notifications").click()
    refusal = requests.post(
        notifier.url + "/api/v1/push/subscriptions",
        json={
            "subscription": {
                "endpoint": fake_subscription.endpoint,
                "keys": {"p256dh": fake_subscription.p256dh, "auth": fake_subscription.auth},
            },
            "categories": ["news"],
        },
        timeout=5,
    )
    assert refusal.status_code == 400
    expect(section.locator("[data-push-live] .error")).to_have_text(refusal.json()["error"])
    expect(section.locator("[data-push-state]")).to_contain_text("off in this browser")
    assert notifier.subscribed_slugs(fake_subscription.endpoint) is None


def test_d_blocked_notifications_are_explained(browser, notifier):
    page = _ready_page(browser, notifier, permission=False)
    state = page.locator("#push [data-push-state]")
    expect(state).to_contain_text("off in this browser")
    page.get_by_label("News", exact=True).check()
    # The reader answers "Block" to the browser's question.
    set_notification_permission(page, notifier.url, "denied")
    page.get_by_role("button", name="Turn on browser notifications").click()
    expect(state).to_contain_text("Notifications are blocked for this site")
    expect(state).to_contain_text("Allow")
    expect(page.get_by_role("button", name="Turn on browser notifications")).to_be_hidden()

    page.reload()  # and on the next visit, before any click
    expect(state).to_contain_text("Notifications are blocked for this site")
    expect(page.get_by_role("button", name="Turn on browser notifications")).to_be_hidden()


def test_d_unsupported_browser_is_told_plainly(browser, notifier):
    browser.add_init_script("delete window.PushManager;")
    page = _ready_page(browser, notifier)
    expect(page.locator("#push [data-push-state]")).to_contain_text("not available here")
    expect(page.get_by_role("button", name="Turn on browser notifications")).to_be_hidden()
    expect(page.get_by_role("button", name="Subscribe by email")).to_be_visible()


def test_d_without_javascript_the_email_form_still_works(playwright_browser, notifier):
    context = playwright_browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(notifier.url + "/")
        expect(page.locator("#push")).to_be_hidden()
        expect(page.locator("noscript")).to_have_count(1)
        assert "need JavaScript" in page.content()
        page.get_by_label("Email address").fill("reader@example.com")
        page.locator('form input[name="categories"][value="news"]').check()
        page.get_by_role("button", name="Subscribe by email").click()
        expect(page.locator("main")).to_contain_text("Check your inbox")
    finally:
        context.close()


RENEW_JS = """
([oldEndpoint, next]) => {
  // What the browser does when the push service replaces a subscription. A synthetic
  // event: its waitUntil() throws, but the handler's work has already started.
  const event = new ExtendableEvent("pushsubscriptionchange");
  event.oldSubscription = oldEndpoint ? { endpoint: oldEndpoint, options: {} } : null;
  event.newSubscription = { endpoint: next.endpoint, options: {}, toJSON: () => next };
  try { self.dispatchEvent(event); } catch (error) {}
}
"""


def test_c_renewed_subscription_keeps_its_categories(browser, notifier, fake_subscription):
    browser.add_init_script(fake_subscription.init_script())
    page = _ready_page(browser, notifier)
    section = page.locator("#push")
    page.get_by_label("Culture").check()
    page.get_by_label("History").check()
    section.get_by_role("button", name="Turn on browser notifications").click()
    expect(section.locator("[data-push-state]")).to_contain_text("subscribed to Culture, History")
    [worker] = browser.service_workers

    def renew(old_endpoint: str | None, new: FakeSubscription) -> None:
        subscription = {"endpoint": new.endpoint, "keys": {"p256dh": new.p256dh, "auth": new.auth}}
        worker.evaluate(RENEW_JS, [old_endpoint, subscription])

    # 1. The categories come from IndexedDB, written by the page when it subscribed.
    second = FakeSubscription.make()
    renew(fake_subscription.endpoint, second)
    wait_until(lambda: notifier.subscribed_slugs(second.endpoint) == ["culture", "history"])

    # 2. Without that record, from the lookup API with the old endpoint.
    worker.evaluate("() => new Promise((done) => { indexedDB.deleteDatabase('notifier-push')"
                    ".onsuccess = done; })")  # fmt: skip
    third = FakeSubscription.make()
    renew(second.endpoint, third)
    wait_until(lambda: notifier.subscribed_slugs(third.endpoint) == ["culture", "history"])

    # 3. A refused renewal deletes nothing on the server.
    refused = FakeSubscription.make()
    refused.endpoint = "https://push.evil.example/push/2"
    renew(third.endpoint, refused)
    page.wait_for_timeout(500)
    assert notifier.subscribed_slugs(refused.endpoint) is None
    assert notifier.subscribed_slugs(third.endpoint) == ["culture", "history"]
    for replaced in (fake_subscription, second):
        assert notifier.subscribed_slugs(replaced.endpoint) is None, "retired when renewed"
