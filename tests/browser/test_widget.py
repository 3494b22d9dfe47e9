"""The embeddable bell on the news site's own origin, talking to notifier cross-origin."""

from __future__ import annotations

import json

from playwright.sync_api import expect

from tests.browser.conftest import deliver_push, wait_for_notifications

ARTICLE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>The border escalation between Armenia and Azerbaijan – Aze.Media</title>
{head}
<style>button {{ background: lime; text-transform: uppercase; }}</style>
</head><body>
<nav class="menu">
  <a href="/category/opinion/">Opinion</a> <a href="/category/news/">News</a>
  <a href="/category/news/economy/">Economy</a> <a href="/category/science/">Science</a>
</nav>
<article class="post type-post category-opinion">
  <h1>The border escalation between Armenia and Azerbaijan is part of a dangerous pattern</h1>
  <div class="entry-meta">in <a href="/category/opinion/" rel="category tag">Opinion</a>,
    <a href="/category/news/" rel="category tag">News</a></div>
  <p>On November 16, intense fighting broke out between Azerbaijan and Armenia…</p>
  {bell}
</article>
<aside class="related"><h3>Related Posts</h3>
  <a href="/category/energy/" rel="category tag">Energy</a>
  <a href="/investment-triumph/">Investment triumph on the banks of the Thames</a>
</aside>
<script src="{notifier}/widget.js" defer></script>
</body></html>
"""


def _site_worker(site, notifier) -> None:
    site.write(
        "notifier-sw.js",
        f'self.NOTIFIER_ORIGIN = "{notifier.url}";\n'
        "importScripts(self.NOTIFIER_ORIGIN + '/sw.js');\n",
    )


def test_e_widget_subscribes_cross_origin_and_the_site_worker_shows_pushes(
    browser, notifier, site, fake_subscription
):
    _site_worker(site, notifier)
    article = site.write(
        "border-escalation.html",
        ARTICLE.format(head="", bell='<div id="notifier-bell"></div>', notifier=notifier.url),
    )
    browser.add_init_script(fake_subscription.init_script())
    browser.grant_permissions(["notifications"], origin=site.origin)
    page = browser.new_page()
    page.goto(article)

    bell = page.locator("#notifier-bell")
    expect(bell).to_have_attribute("data-state", "off")
    subscribe = bell.get_by_role("button", name="Get real time update about this post")
    expect(subscribe).to_be_visible()
    # The post's categories are pre-selected; the related post's "Energy" is not.
    expect(bell.get_by_label("Opinion")).to_be_checked()
    expect(bell.get_by_label("News", exact=True)).to_be_checked()
    assert bell.get_by_label("Energy").count() == 0
    # Scoped styles: the site's `button {...}` does not reach inside, ours do not leak out.
    assert subscribe.evaluate("b => getComputedStyle(b).textTransform") == "none"

    subscribe.click()
    expect(bell).to_have_attribute("data-state", "on")
    expect(bell).to_contain_text("You get notifications on this device for")
    expect(bell).to_contain_text("News")
    assert notifier.subscribed_slugs(fake_subscription.endpoint) == ["news", "opinion"]
    worker = page.evaluate(
        "async () => (await navigator.serviceWorker.getRegistration('/')).active.scriptURL"
    )
    assert worker == f"{site.origin}/notifier-sw.js"

    # notifier's sw.js, imported by the site's worker, handles the push on the site's origin.
    payload = {
        "title": "EU mediates conflict in South Caucasus",
        "body": "Long part of Russia's geopolitical orbit.",
        "icon": None,
        "image": None,
        "url": f"{site.origin}/eu-mediates/",
        "tag": "article-7",
        "manageUrl": f"{notifier.url}/push/manage/xyz",
        "timestamp": None,
    }

    def deliver() -> None:
        deliver_push(page, site.origin + "/", json.dumps(payload))

    deliver()
    [shown] = wait_for_notifications(page, site.origin + "/", redeliver=deliver)
    assert (shown["title"], shown["body"]) == (payload["title"], payload["body"])
    assert shown["data"]["url"] == f"{site.origin}/eu-mediates/"
    assert shown["data"]["manageUrl"] == payload["manageUrl"]

    # The state survives a reload (found through getSubscription() + the lookup API).
    page.reload()
    expect(bell).to_have_attribute("data-state", "on")
    expect(bell).to_contain_text("for News, Opinion")
    # More categories are fetched when asked for; saving replaces the set.
    bell.get_by_text("More categories").click()
    bell.get_by_label("Economy").check()
    bell.get_by_role("button", name="Save categories").click()
    expect(bell).to_contain_text("for Economy, News, Opinion")
    assert notifier.subscribed_slugs(fake_subscription.endpoint) == ["economy", "news", "opinion"]

    bell.get_by_role("button", name="Unsubscribe").click()
    expect(bell).to_have_attribute("data-state", "off")
    expect(bell.get_by_role("status")).to_contain_text("Unsubscribed")
    assert notifier.subscribed_slugs(fake_subscription.endpoint) is None


def test_e_without_a_placeholder_the_bell_floats_and_reads_article_section(browser, notifier, site):
    head = (
        '<meta property="article:section" content="Logistics-Transport">'
        '<meta property="article:section" content="Science">'
    )
    html = ARTICLE.format(head=head, bell="", notifier=notifier.url)
    html = html.replace('rel="category tag"', 'rel="bookmark"')  # no category links this time
    article = site.write("floating.html", html)
    page = browser.new_page()
    page.goto(article)

    toggle = page.get_by_role("button", name="Get notifications for new articles")
    expect(toggle).to_be_visible()
    assert toggle.evaluate("b => getComputedStyle(b.parentElement).position") == "fixed"
    expect(toggle).to_have_attribute("aria-expanded", "false")
    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    panel = page.locator(".notifier-panel")
    expect(panel.get_by_label("Logistics-Transport")).to_be_checked()
    expect(panel.get_by_label("Science")).to_be_checked()
    expect(panel.get_by_role("button", name="Get real time update")).to_be_visible()
    # Nothing leaked into the page's globals.
    leaked = page.evaluate(
        """() => Object.keys(window).filter((k) => /notifier|widget|bell/i.test(k))"""
    )
    assert leaked == []
