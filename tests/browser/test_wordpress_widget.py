"""The bell on a real WordPress post page (Debian's WordPress, its default theme Twenty
Twenty-Three): the post's categories are ticked, read from the page's own markup, and a click
subscribes this browser to exactly those categories in notifier."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from notifier.db import session_scope
from notifier.domain.categories import CategoryIndex, CategoryRef
from notifier.web import create_app
from tests.browser.conftest import FAKE_PUSH_ORIGIN, Notifier
from tests.conftest import make_settings
from tests.support.processes import web_server
from tests.support.smtp import free_port
from tests.web.conftest import RecordingQueue

POST_CATEGORIES = ["Oil & Gas", "Qarabağ", "Наука"]

# docs/wordpress.md, step 3, as a "header and footer scripts" plugin would print it on posts.
THEME_LINES = """<?php
add_action('wp_footer', function () {
    if (!is_singular('post')) return;
    echo '<div id="notifier-bell"></div>'
        . '<script src="NOTIFIER/widget.js" defer></script>';
});
"""


@pytest.fixture
def wp_notifier(tmp_path, pg_database_url, wordpress):
    """notifier with the site's categories known (as after its first feed poll), answering
    the WordPress origin's pages."""
    with session_scope(pg_database_url) as session:
        CategoryIndex(session).resolve([CategoryRef(name) for name in POST_CATEGORIES])
        session.commit()
    port = free_port()
    settings = make_settings(
        tmp_path,
        DATABASE_URL=pg_database_url,
        PUBLIC_URL=f"http://127.0.0.1:{port}",
        PUSH_ALLOWED_ORIGINS=FAKE_PUSH_ORIGIN,
        CORS_ALLOWED_ORIGINS=wordpress.url,
    )
    with web_server(create_app(settings, queue=RecordingQueue()), port) as url:
        yield Notifier(url)


def _post_page(wordpress) -> str:
    terms = [wordpress.term_ids[name] for name in POST_CATEGORIES]
    post_id = wordpress.php(
        "echo json_encode(wp_insert_post(['post_title' => 'Pipeline news', 'post_status' =>"
        " 'publish', 'post_content' => 'Body', 'post_category' => $in['terms']], true));",
        terms=terms,
    )
    return wordpress.php("echo json_encode(get_permalink($in['id']));", id=post_id)


def test_e_the_bell_on_a_wordpress_post_ticks_its_categories(
    browser, wordpress, wp_notifier, fake_subscription
):
    # By hand, as docs/wordpress.md says: the service worker line at the root, the bell lines
    # on single posts. Nothing tells the bell the categories: it reads the theme's links.
    (wordpress.root / "notifier-sw.js").write_text(
        f'self.NOTIFIER_ORIGIN = "{wp_notifier.url}"; '
        'importScripts(self.NOTIFIER_ORIGIN + "/sw.js");'
    )
    lines = wordpress.root / "wp-content/mu-plugins/theme-lines.php"
    lines.parent.mkdir(exist_ok=True)
    lines.write_text(THEME_LINES.replace("NOTIFIER", wp_notifier.url))
    try:
        post = _post_page(wordpress)
        browser.add_init_script(fake_subscription.init_script())
        browser.grant_permissions(["notifications"], origin=wordpress.url)
        page = browser.new_page()
        page.goto(post)
        bell = page.locator("#notifier-bell")
        expect(bell).to_have_attribute("data-state", "off")
        for name in POST_CATEGORIES:
            expect(bell.get_by_label(name, exact=True)).to_be_checked()
        assert bell.locator("input.notifier-category:checked").count() == 3

        bell.get_by_role("button", name="Get real time update about this post").click()
        expect(bell).to_have_attribute("data-state", "on")
        subscribed = wp_notifier.subscribed_slugs(fake_subscription.endpoint)
        assert subscribed == ["oil-gas", "qarabag", "наука"]
    finally:
        lines.unlink()
        (wordpress.root / "notifier-sw.js").unlink()


def test_e_the_plugin_adds_the_bell_with_the_posts_categories(browser, wordpress, wp_notifier):
    wordpress.configure_plugin(wp_notifier.url, "unused-secret", bell=True)
    try:
        post = _post_page(wordpress)
        page = browser.new_page()
        page.goto(post)
        bell = page.locator("#notifier-bell")
        expect(bell).to_have_attribute("data-state", "off")
        for name in POST_CATEGORIES:  # data-categories gives the slugs, the links the names
            expect(bell.get_by_label(name, exact=True)).to_be_checked()
        worker = page.request.get(f"{wordpress.url}/notifier-sw.js")
        assert worker.ok and f'"{wp_notifier.url}"' in worker.text()
    finally:
        wordpress.configure_plugin("", "")
