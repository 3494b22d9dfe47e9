"""A real WordPress (Debian's package, PHP's server, MariaDB) with our plugin file, a real
notifier web app and Celery worker, real SMTP and a real push service: every way WordPress
publishes reaches each reader of the post's categories exactly once, on both channels."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import timedelta

import pytest
import requests
from sqlalchemy import select

from notifier.celery_app import make_celery
from notifier.db import session_scope
from notifier.models import Article, Category, Feed
from notifier.timeutil import utcnow
from notifier.web import create_app
from tests import factories
from tests.conftest import make_settings
from tests.support.processes import celery_processes, wait_until, web_server
from tests.support.smtp import free_port

SECRET = "wordpress-webhook-secret"
SLUGS = {"Science": "science", "Oil & Gas": "oil-gas", "Qarabağ": "qarabag", "Наука": "наука",
         "Culture": "culture"}  # fmt: skip
QUIET_SECONDS = 3  # how long "nothing more arrives" is watched for


@dataclass
class Reader:
    email: str
    browser: object  # tests.support.push_service.BrowserSubscription


class Newsroom:
    """The WordPress site, the notifier it talks to, and one reader per category."""

    def __init__(self, wordpress, settings, smtp, push_service) -> None:
        self.wp, self.settings, self.smtp, self.push = wordpress, settings, smtp, push_service
        self.celery = make_celery(settings)
        self.readers: dict[str, Reader] = {}

    def poll_feed(self) -> None:
        """What beat does every FEED_POLL_SECONDS, now: the worker polls the site's feed."""
        started = utcnow()
        self.celery.send_task("notifier.tasks.poll_feeds")

        def polled() -> bool:
            with session_scope(self.settings.database_url) as session:
                feed = session.scalar(select(Feed))
                return bool(feed and feed.last_success_at and feed.last_success_at >= started)

        wait_until(polled, timeout=30, message="the worker never polled the WordPress feed")
        self.settle()

    def settle(self) -> None:
        """Wait until every announced article has been fanned out."""

        def planned() -> bool:
            with session_scope(self.settings.database_url) as session:
                waiting = select(Article.id).where(
                    Article.announce.is_(True), Article.fanned_out_at.is_(None)
                )
                return session.scalar(waiting) is None

        wait_until(planned, timeout=30, message="an announced article was never fanned out")

    def add_readers(self) -> None:
        with session_scope(self.settings.database_url) as session:
            for name, slug in SLUGS.items():
                reader = Reader(f"{slug}@example.com", self.push.new_subscription())
                factories.subscriber(session, reader.email, slug)
                factories.push_subscription(session, reader.browser, slug)
                self.readers[name] = reader
            session.commit()

    def received(self) -> dict[str, tuple[list[str], list[str]]]:
        """Per category: the subjects its reader was emailed and the titles pushed."""
        return {
            name: (
                sorted(m["Subject"] for m in self.smtp.handler.to(reader.email)),
                sorted(p.json()["title"] for p in reader.browser.received),
            )
            for name, reader in self.readers.items()
        }

    def wait_for(self, expected: dict[str, list[str]]) -> None:
        """Each reader gets exactly `expected[category]` by email and by push, and nothing
        arrives for anyone else, even after a quiet while."""
        want = {name: (sorted(titles), sorted(titles)) for name, titles in expected.items()}
        want.update({name: ([], []) for name in self.readers if name not in expected})
        wait_until(lambda: self.received() == want, timeout=30,
                   message=f"expected {want}, got {self.received()}")  # fmt: skip
        time.sleep(QUIET_SECONDS)
        assert self.received() == want, "something arrived twice or for the wrong reader"

    def announced_ago(self, guid: str, seconds: float) -> None:
        """Move the article's announcement back in notifier's records, as if `seconds` had
        passed since publishing (the test cannot wait ten minutes for the grace to end)."""
        with session_scope(self.settings.database_url) as session:
            article = session.scalars(select(Article).where(Article.guid == guid)).one()
            article.first_seen_at = article.first_seen_at - timedelta(seconds=seconds)
            session.commit()

    # ---- how WordPress publishes --------------------------------------------------------

    def publish_in_block_editor(self, title: str, *categories: str) -> dict:
        """The block editor saves a draft, then publishes with one REST request that also
        sets the categories (saved after transition_post_status has fired)."""
        draft = self.wp.rest("POST", "/wp/v2/posts", {"title": title, "status": "draft",
                                                       "content": "<p>Body</p>"})  # fmt: skip
        return self.wp.rest("POST", f"/wp/v2/posts/{draft['id']}", {
            "title": title, "status": "publish", "content": "<p>Body</p>",
            "categories": self.term_ids(*categories),
        })  # fmt: skip

    def publish_in_classic_editor(self, title: str, *categories: str) -> int:
        """wp-admin/post.php: an auto-draft, then the form posted to edit_post()."""
        return self.wp.php(
            """
            $post = get_default_post_to_edit('post', true);
            $_POST = ['post_ID' => $post->ID, 'post_type' => 'post', 'action' => 'editpost',
                'post_title' => $in['title'], 'content' => 'Body', 'publish' => 'Publish',
                'original_post_status' => 'auto-draft', 'post_status' => 'publish',
                'visibility' => 'public', 'post_category' => array_merge([0], $in['terms'])];
            $_REQUEST = $_POST;
            echo json_encode(edit_post());
            """,
            title=title, terms=self.term_ids(*categories),
        )  # fmt: skip

    def schedule(self, title: str, seconds: int, *categories: str) -> int:
        return self.wp.php(
            "echo json_encode(wp_insert_post(['post_title' => $in['title'], 'post_status' =>"
            " 'future', 'post_date_gmt' => gmdate('Y-m-d H:i:s', time() + $in['s']),"
            " 'post_date' => get_date_from_gmt(gmdate('Y-m-d H:i:s', time() + $in['s'])),"
            " 'post_category' => $in['terms']], true));",
            title=title, s=seconds, terms=self.term_ids(*categories),
        )  # fmt: skip

    def insert_post(self, title: str, *categories: str) -> int:
        """What WP-CLI's `wp post create --post_status=publish` and importers call."""
        return self.wp.php(
            "echo json_encode(wp_insert_post(['post_title' => $in['title'], 'post_status' =>"
            " 'publish', 'post_content' => 'Body', 'post_category' => $in['terms']], true));",
            title=title, terms=self.term_ids(*categories),
        )  # fmt: skip

    def term_ids(self, *names: str) -> list[int]:
        return [self.wp.term_ids[name] for name in names]

    def guid(self, post_id: int) -> str:
        return self.wp.php("echo json_encode(get_the_guid($in['id']));", id=post_id)


@pytest.fixture
def newsroom(tmp_path, wordpress, pg_database_url, redis_url, smtp, push_service):
    port = free_port()
    settings = make_settings(
        tmp_path,
        DATABASE_URL=pg_database_url,
        CELERY_BROKER_URL=redis_url,
        SMTP_URL=smtp.url,
        PUBLIC_URL=f"http://127.0.0.1:{port}",
        FEED_URLS=f"{wordpress.url}/?feed=rss2",
        PUSH_ALLOWED_ORIGINS=push_service.origin,
        WEBHOOK_SECRET=SECRET,
    )
    room = Newsroom(wordpress, settings, smtp, push_service)
    with (
        web_server(create_app(settings), port) as base,
        celery_processes(
            settings,
            tmp_path,
            beat=False,  # the tests poll the feed when they mean to
        ),
    ):
        wordpress.configure_plugin(base, SECRET)
        # The first poll meets the site's categories by name, as a new install does.
        room.poll_feed()
        room.add_readers()
        yield room
    wordpress.configure_plugin("", "")


def test_every_way_wordpress_publishes_reaches_each_reader_once(newsroom, wordpress):
    room = newsroom
    with session_scope(room.settings.database_url) as session:
        slugs = set(session.scalars(select(Category.slug)))
    assert set(SLUGS.values()) <= slugs, "the feed's names made the WordPress slugs"

    block = room.publish_in_block_editor("Tom & Jerry’s “Qarabağ” — 5 > 3", "Science")
    classic = room.publish_in_classic_editor("Oil prices & gas: Brent at $90", "Oil & Gas")
    scheduled = room.schedule("Qarabağ at dawn", 2, "Qarabağ")
    room.insert_post("Наука: новое открытие", "Наука", "Science")
    time.sleep(2.5)
    wordpress.run_cron()  # publishes the scheduled post, as wp-cron does on a visit
    room.wait_for({
        "Science": ["Tom & Jerry’s “Qarabağ” — 5 > 3", "Наука: новое открытие"],
        "Oil & Gas": ["Oil prices & gas: Brent at $90"],
        "Qarabağ": ["Qarabağ at dawn"],
        "Наука": ["Наука: новое открытие"],
    })  # fmt: skip
    assert wordpress.option("notifier_last_error") is False

    # The plugin cannot reach notifier: publishing still works, the failure is kept for the
    # settings screen, and the feed poll announces the post, through the feed's category names.
    wordpress.configure_plugin("http://127.0.0.1:9", SECRET)
    room.insert_post("Pipeline to Qarabağ", "Oil & Gas", "Qarabağ")
    assert "Pipeline to Qarabağ" in wordpress.option("notifier_last_error")
    wordpress.configure_plugin(room.settings.public_url, SECRET)
    room.poll_feed()

    # Re-polls, edits, re-publishes and unpublish/publish cycles send nothing more.
    room.wp.rest("POST", f"/wp/v2/posts/{block['id']}", {"title": "Tom & Jerry, updated"})
    for status in ("draft", "publish"):
        room.wp.php("wp_update_post(['ID' => $in['id'], 'post_status' => $in['s']]);",
                    id=classic, s=status)  # fmt: skip
    room.wp.rest("POST", f"/wp/v2/posts/{scheduled}", {"status": "draft"})
    room.wp.rest("POST", f"/wp/v2/posts/{scheduled}", {"status": "publish"})
    room.poll_feed()
    room.wait_for({
        "Science": ["Tom & Jerry’s “Qarabağ” — 5 > 3", "Наука: новое открытие"],
        "Oil & Gas": ["Oil prices & gas: Brent at $90", "Pipeline to Qarabağ"],
        "Qarabağ": ["Qarabağ at dawn", "Pipeline to Qarabağ"],
        "Наука": ["Наука: новое открытие"],
    })  # fmt: skip

    # A category WordPress gains now is announced by the webhook first; the feed then lands
    # on the same category, not a second one.
    term = room.wp.php("echo json_encode(wp_insert_term('R&D \"Lab\"', 'category'));")
    room.wp.term_ids['R&D "Lab"'] = term["term_id"]
    room.insert_post("Lab opens", 'R&D "Lab"')
    room.settle()
    room.poll_feed()
    with session_scope(room.settings.database_url) as session:
        made = session.scalars(select(Category).where(Category.name == 'R&D "Lab"')).all()
    wp_slug = room.wp.php("echo json_encode(get_term($in['id'])->slug);", id=term["term_id"])
    assert [(c.slug, c.wp_term_id) for c in made] == [(wp_slug, term["term_id"])]


def test_categories_added_soon_after_publishing_reach_their_readers_once(newsroom):
    room = newsroom
    first = room.publish_in_block_editor("Budget passes", "Science")
    room.wait_for({"Science": ["Budget passes"]})

    # 30 s later the editor adds a category in the block editor: its readers get the post
    # once (through the plugin's next call), the readers who had it do not get it again.
    room.announced_ago(first["guid"]["rendered"], 30)
    room.wp.rest("POST", f"/wp/v2/posts/{first['id']}",
                 {"categories": room.term_ids("Science", "Oil & Gas")})  # fmt: skip
    room.wait_for({"Science": ["Budget passes"], "Oil & Gas": ["Budget passes"]})

    # The same through the feed: a category set without the plugin hearing of it.
    second = room.publish_in_block_editor("Harvest in Qarabağ", "Science")
    room.settle()
    room.announced_ago(second["guid"]["rendered"], 30)
    room.wp.php("wp_set_post_categories($in['id'], $in['terms']);", id=second["id"],
                terms=room.term_ids("Science", "Qarabağ"))  # fmt: skip
    room.poll_feed()
    expected = {"Science": ["Budget passes", "Harvest in Qarabağ"],
                "Oil & Gas": ["Budget passes"], "Qarabağ": ["Harvest in Qarabağ"]}  # fmt: skip
    room.wait_for(expected)

    # After the grace period (CATEGORY_GRACE_SECONDS, default 600), edits send nothing.
    late = room.publish_in_block_editor("Old news", "Science")
    room.settle()
    room.announced_ago(late["guid"]["rendered"], room.settings.category_grace_seconds + 1)
    room.wp.rest("POST", f"/wp/v2/posts/{late['id']}",
                 {"categories": room.term_ids("Science", "Наука", "Culture")})  # fmt: skip
    room.poll_feed()
    room.wait_for({**expected, "Science": [*expected["Science"], "Old news"]})


def test_the_settings_screen_takes_the_address_and_shows_the_last_failure(wordpress):
    wordpress.configure_plugin("http://127.0.0.1:9", SECRET)
    try:
        wordpress.php("wp_insert_post(['post_title' => 'Nobody hears', 'post_status' => "
                      "'publish', 'post_category' => [$in['term']]]);",
                      term=wordpress.term_ids["Culture"])  # fmt: skip
        admin = requests.Session()
        admin.cookies.set("wordpress_test_cookie", "WP Cookie check")
        login = admin.post(f"{wordpress.url}/wp-login.php", data={
            "log": "admin", "pwd": "admin-password-123", "testcookie": "1",
            "redirect_to": f"{wordpress.url}/wp-admin/options-general.php?page=notifier",
        }, timeout=30)  # fmt: skip
        assert login.status_code == 200, wordpress.log()
        page = login.text
        assert 'name="notifier_url"' in page and 'value="http://127.0.0.1:9"' in page
        assert "Last problem" in page and "Nobody hears" in page and "the feed poll" in page

        # Saving the form stores the address, as an admin does it.
        nonce = re.search(r'name="_wpnonce" value="([^"]+)"', page).group(1)
        saved = admin.post(f"{wordpress.url}/wp-admin/options.php", data={
            "option_page": "notifier", "action": "update", "_wpnonce": nonce,
            "notifier_url": "https://notify.aze.media/", "notifier_secret": " s3cret ",
        }, timeout=30)  # fmt: skip
        assert saved.status_code == 200
        assert wordpress.option("notifier_url") == "https://notify.aze.media/"
        assert wordpress.option("notifier_secret") == "s3cret"
    finally:
        wordpress.configure_plugin("", "")
