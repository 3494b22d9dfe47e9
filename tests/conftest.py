"""Real PostgreSQL, Redis, SMTP and HTTP for the tests that use them; SQLite for storage tests.

TEST_DATABASE_URL points at a PostgreSQL server we may create databases on (a fresh one is
made per run and migrated with Alembic); TEST_REDIS_URL at a Redis database we may flush.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import text
from sqlalchemy.orm import Session

from notifier.config import Settings, load_settings
from notifier.db import engine_for, session_factory
from notifier.schema import upgrade_database
from tests.support.databases import scratch_database
from tests.support.feed_server import FeedServer
from tests.support.smtp import SmtpServer


def _redis_url_for_this_process() -> str:
    """TEST_REDIS_URL's database for the first (or only) test process; pytest-xdist's
    worker gwN takes the Nth database below it, so processes never flush each other's."""
    server, _, db = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15").rpartition("/")
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
    return f"{server}/{(int(db or 0) - worker) % 16}"


REDIS_URL = _redis_url_for_this_process()
TABLES = (
    "suppressions, bounce_reports, deliveries, digest_leftovers, digests, digest_schedules, "
    "article_categories, subscriber_categories, "
    "push_subscription_categories, alert_categories, alerts, articles, subscribers, "
    "push_subscriptions, feeds, api_tokens, "
    "editors, login_attempts, worker_heartbeats, push_service_backoffs, task_failures, sweep_runs,"
    " recoveries, unsent_tasks, delivery_summaries, retention_runs"
)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A database of our own for this run, created from scratch and migrated."""
    with scratch_database() as url:
        yield url


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'notifier.sqlite'}"
    upgrade_database(url)
    return url


_CATEGORY_ROWS = text("SELECT id, slug, name, wp_term_id FROM categories ORDER BY id")


def _seeded_category_rows(url: str) -> tuple:
    with engine_for(url).connect() as conn:
        return tuple(tuple(row) for row in conn.execute(_CATEGORY_ROWS))


@pytest.fixture(scope="session")
def seeded_categories(pg_url, sqlite_url) -> dict[str, tuple]:
    """The migrated categories (id, slug, name, WordPress term id) of each database."""
    return {url: _seeded_category_rows(url) for url in (pg_url, sqlite_url)}


def _clean(url: str, seeded: tuple) -> None:
    """Empty every table but the seeded categories. DELETE, not TRUNCATE: on tables holding
    a test's few rows it takes milliseconds where TRUNCATE (new files for every table and
    index) took a tenth of a second or more, twice per test. Ids restart at 1 as before."""
    with engine_for(url).begin() as conn:
        for table in TABLES.split(", "):
            conn.execute(text(f"DELETE FROM {table}"))
        conn.execute(text("DELETE FROM categories WHERE id > :n"), {"n": seeded[-1][0]})
        if not url.startswith("sqlite"):
            conn.execute(_RESTART_SEQUENCES)
        if tuple(tuple(row) for row in conn.execute(_CATEGORY_ROWS)) != seeded:
            _restore_categories(conn, seeded)


# What TRUNCATE ... RESTART IDENTITY did: every id sequence but the categories' starts over.
_RESTART_SEQUENCES = text(
    "SELECT setval(format('%I.%I', schemaname, sequencename), 1, false) FROM pg_sequences"
    " WHERE schemaname = current_schema()"
    " AND format('%I.%I', schemaname, sequencename) <> pg_get_serial_sequence('categories', 'id')"
)


def _restore_categories(conn, seeded: tuple) -> None:
    """A webhook test that taught a seeded category a term id, or renamed it, must not
    change what the next test finds. Slugs are unique: park them before putting them back."""
    conn.execute(text("UPDATE categories SET slug = 'restoring-' || id"))
    conn.execute(
        text("UPDATE categories SET slug = :slug, name = :name, wp_term_id = :term WHERE id = :id"),
        [{"id": i, "slug": slug, "name": name, "term": term} for i, slug, name, term in seeded],
    )


@pytest.fixture(params=["postgresql", "sqlite"])
def database_url(request, pg_url, sqlite_url, seeded_categories) -> Iterator[str]:
    """Storage tests run on both databases; each starts from the migrated, seeded state."""
    url = pg_url if request.param == "postgresql" else sqlite_url
    _clean(url, seeded_categories[url])
    yield url
    _clean(url, seeded_categories[url])


@pytest.fixture
def pg_database_url(pg_url, seeded_categories) -> Iterator[str]:
    _clean(pg_url, seeded_categories[pg_url])
    yield pg_url
    _clean(pg_url, seeded_categories[pg_url])


@pytest.fixture
def session(database_url) -> Iterator[Session]:
    with session_factory(database_url)() as session:
        yield session


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    server = FeedServer().start()
    yield server
    server.stop()


@pytest.fixture
def redis_url() -> str:
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    client.close()
    return REDIS_URL


def make_settings(tmp_path: Path, **env: str) -> Settings:
    base = {
        "NOTIFIER_DATA_DIR": str(tmp_path / "var"),
        "SECRET_KEY": "test-secret-key",
        "PUBLIC_URL": "http://127.0.0.1:8000",
        "MAIL_FROM": "Aze.Media <news@aze.test>",
        "CONFIRM_RESEND_SECONDS": "0",
        "DELIVERY_RETRY_BASE_SECONDS": "1",
        "DELIVERY_RETRY_MAX_SECONDS": "2",
    }
    return load_settings({**base, **env})


# Nothing listens here: a test that sends mail without asking for the `smtp` server fails
# (the connection is refused) rather than passing without a real server behind it.
NO_SMTP_SERVER = "smtp://127.0.0.1:9"


@pytest.fixture
def settings(request, tmp_path, database_url) -> Settings:
    """Settings on the database under test. The SMTP and push servers are started only for
    tests that send (they ask for the `smtp` and `push_service` fixtures), so a test that
    needs nothing but the database pays only for the database."""
    push_origins = ["https://fcm.googleapis.com"]
    if "push_service" in request.fixturenames:
        push_origins.insert(0, request.getfixturevalue("push_service").origin)
    smtp_url = NO_SMTP_SERVER
    if "smtp" in request.fixturenames:
        smtp_url = request.getfixturevalue("smtp").url
    return make_settings(
        tmp_path,
        DATABASE_URL=database_url,
        SMTP_URL=smtp_url,
        PUSH_ALLOWED_ORIGINS=",".join(push_origins),
        CORS_ALLOWED_ORIGINS="https://aze.media",
    )


@pytest.fixture
def push_service():
    from tests.support.push_service import PushService

    service = PushService().start()
    yield service
    service.stop()


WORDPRESS_CATEGORIES = ["Science", "Oil & Gas", "Qarabağ", "Наука", "Culture"]


@pytest.fixture(scope="session")
def wordpress(tmp_path_factory):
    """A real WordPress with our plugin, shared by the tests that need the news site itself
    (installing one takes a few seconds). Each test points the plugin at its own notifier."""
    from tests.support.wordpress import WordPress, missing_parts

    if why := missing_parts():
        pytest.skip(f"WordPress tests {why}")
    site = WordPress(tmp_path_factory.mktemp("wordpress"), WORDPRESS_CATEGORIES).start()
    # Published before any notifier saw the site: a feed's baseline, never announced.
    site.php(
        "wp_insert_post(['post_title' => 'Before notifier', 'post_status' => 'publish',"
        " 'post_category' => array_values($in['terms'])]);",
        terms=site.term_ids,
    )
    yield site
    site.stop()
