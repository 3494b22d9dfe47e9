"""`notifier status`: what it prints and its exit code, from rows put in place directly."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from notifier.cli import cli
from notifier.db import session_scope
from notifier.models import Delivery, DeliveryOutcome, DeliveryStatus, Feed, WorkerHeartbeat
from tests import factories
from tests.conftest import make_settings
from tests.support.processes import settings_env
from tests.support.smtp import free_port

FEED = "https://aze.media/feed/"
READER = "reader@example.com"


@pytest.fixture
def env(tmp_path, pg_database_url, redis_url) -> dict[str, str]:
    settings = make_settings(tmp_path, DATABASE_URL=pg_database_url, CELERY_BROKER_URL=redis_url)
    return settings_env(settings)


def _status(env: dict[str, str], *args: str):
    return CliRunner().invoke(cli, ["status", *args], env=env)


def _heartbeat(url: str, hostname: str, age_seconds: float) -> None:
    seen = datetime.now(UTC) - timedelta(seconds=age_seconds)
    with session_scope(url) as session:
        session.add(
            WorkerHeartbeat(hostname=hostname, seen_at=seen, started_at=seen - timedelta(hours=1),
                            concurrency=2, active_tasks=1, pid=4321)
        )  # fmt: skip
        session.commit()


def _feed(url: str, last_error: str | None = None, success_age: float = 60) -> None:
    now = datetime.now(UTC)
    with session_scope(url) as session:
        session.add(
            Feed(url=FEED, added_at=now - timedelta(days=3), last_polled_at=now,
                 last_success_at=now - timedelta(seconds=success_age), last_error=last_error)
        )  # fmt: skip
        session.commit()


def test_healthy_with_a_live_worker_and_a_healthy_feed(env, pg_database_url):
    _heartbeat(pg_database_url, "w1@box", age_seconds=2)
    _feed(pg_database_url)
    result = _status(env)
    assert result.exit_code == 0, result.output
    assert "online   w1@box" in result.output
    assert "concurrency 2  active 1" in result.output
    assert "celery  0 waiting" in result.output
    assert f"ok         {FEED}  last success 60s ago" in result.output
    assert result.output.rstrip().endswith("Healthy.")


def test_failing_feed_makes_it_unhealthy(env, pg_database_url):
    _heartbeat(pg_database_url, "w1@box", age_seconds=2)
    _feed(pg_database_url, last_error="HTTP 500 from the site")
    result = _status(env)
    assert result.exit_code == 1, result.output
    assert f"Feed {FEED} is unhealthy: last poll failed: HTTP 500 from the site." in result.output


def test_feed_not_read_for_too_long_makes_it_unhealthy(env, pg_database_url):
    _heartbeat(pg_database_url, "w1@box", age_seconds=2)
    _feed(pg_database_url, success_age=3 * 3600)  # FEED_STALE_SECONDS is 900
    result = _status(env)
    assert result.exit_code == 1, result.output
    assert "last read successfully 3h ago" in result.output


def test_a_stale_worker_heartbeat_makes_it_unhealthy(env, pg_database_url):
    _heartbeat(pg_database_url, "live@box", age_seconds=2)
    _heartbeat(pg_database_url, "gone@box", age_seconds=300)
    _feed(pg_database_url)
    result = _status(env)
    assert result.exit_code == 1, result.output
    assert "OFFLINE  gone@box  heartbeat 5m ago" in result.output
    assert "Worker gone@box is offline: last heartbeat 5m ago." in result.output


def test_no_worker_at_all_makes_it_unhealthy(env, pg_database_url):
    _feed(pg_database_url)
    result = _status(env)
    assert result.exit_code == 1, result.output
    assert "No worker is online" in result.output


def test_workers_unseen_for_a_day_are_forgotten(env, pg_database_url):
    _heartbeat(pg_database_url, "live@box", age_seconds=2)
    _heartbeat(pg_database_url, "retired@box", age_seconds=2 * 86400)
    result = _status(env)
    assert result.exit_code == 0, result.output
    assert "retired@box" not in result.output


def test_json_for_machines_and_failures_without_addresses(env, pg_database_url):
    _heartbeat(pg_database_url, "w1@box", age_seconds=2)
    _feed(pg_database_url)
    with session_scope(pg_database_url) as session:
        reader = factories.subscriber(session, READER, "news")
        article = factories.article(session, "news")
        session.add(
            Delivery(article_id=article.id, subscriber_id=reader.id, channel="email",
                     status=DeliveryStatus.FAILED, outcome=DeliveryOutcome.GONE,
                     last_error=f"gone: SMTP 550 5.1.1 <{READER}> No such user")
        )  # fmt: skip
        session.commit()
    result = _status(env, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["healthy"] is True and report["problems"] == []
    assert report["database"]["ok"] and report["broker"]["ok"]
    assert report["queues"] == {"celery": 0, "feeds": 0}
    [worker] = report["workers"]
    assert worker["hostname"] == "w1@box" and worker["online"] and worker["concurrency"] == 2
    assert worker["heartbeat_age_seconds"] < 30
    [feed] = report["feeds"]
    assert feed["url"] == FEED and feed["healthy"] and feed["last_error"] is None
    [hour] = report["failures"]["last_hour"]
    assert hour["channel"] == "email" and hour["count"] == 1
    assert hour["cause"] == "gone: SMTP 550 5.1.1 <address> No such user"
    assert report["failures"]["last_day"][0]["count"] == 1
    assert report["deliveries_last_day"] == {"email": {"gone": 1}}
    assert READER not in result.output
    text_result = _status(env)
    assert "email  1 / 1  gone: SMTP 550" in text_result.output
    assert READER not in text_result.output


def test_json_when_unhealthy(env, pg_database_url):
    result = _status(env, "--json")
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["healthy"] is False
    assert report["problems"][0].startswith("No worker is online")


def test_unreachable_broker(env, pg_database_url):
    _heartbeat(pg_database_url, "w1@box", age_seconds=2)
    env = {**env, "CELERY_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"}
    result = _status(env, "--json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)
    assert report["queues"] is None and not report["broker"]["ok"]
    assert report["problems"][0].startswith("The broker is unreachable")


def test_unreachable_database(env):
    env = {**env, "DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x"}
    result = _status(env)
    assert result.exit_code == 1, result.output
    assert "The database is unreachable" in result.output
    assert "unknown: the database is unreachable" in result.output


def test_ready_checks_what_readyz_checks(env):
    result = _status(env, "--ready")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].startswith("database: ok")
    broken = {**env, "CELERY_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"}
    result = _status(broken, "--ready", "--json")
    assert result.exit_code == 1
    assert json.loads(result.output)["failing"][0].startswith("broker: ")


def test_this_worker_looks_for_a_heartbeat_from_this_host(env, pg_database_url):
    _heartbeat(pg_database_url, "w1@elsewhere", age_seconds=2)
    result = _status(env, "--this-worker")
    assert result.exit_code == 1, result.output
    assert f"No worker on {socket.gethostname()}" in result.output
    _heartbeat(pg_database_url, f"celery@{socket.gethostname()}", age_seconds=2)
    result = _status(env, "--this-worker", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["healthy"] is True


def test_bad_usage_exits_2(env):
    assert _status(env, "--ready", "--this-worker").exit_code == 2
    assert _status(env, "--no-such-flag").exit_code == 2
