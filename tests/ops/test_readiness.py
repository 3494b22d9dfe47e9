"""/healthz and /readyz against real PostgreSQL and Redis, and against dead ones."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from notifier.ops.readiness import check_readiness
from notifier.web import create_app
from tests.conftest import make_settings
from tests.support.databases import scratch_database
from tests.support.processes import celery_processes
from tests.support.smtp import free_port


def _probe(settings, path: str = "/readyz"):
    started = time.monotonic()
    answer = create_app(settings).test_client().get(path)
    return answer, time.monotonic() - started


@pytest.fixture
def old_schema_url() -> Iterator[str]:
    """A scratch PostgreSQL database migrated only to the first revision."""
    with scratch_database("notifier_old", revision="0001") as url:
        yield url


def test_ready_with_database_broker_and_a_real_worker(tmp_path, pg_database_url, redis_url):
    settings = make_settings(tmp_path, DATABASE_URL=pg_database_url, CELERY_BROKER_URL=redis_url)
    with celery_processes(settings, tmp_path, beat=False):
        answer, _ = _probe(settings)
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"database", "broker", "migrations"}
    assert all(check["ok"] for check in body["checks"].values())
    assert answer.headers["Cache-Control"] == "no-store"


def test_dead_broker_is_named_and_answered_quickly(tmp_path, pg_database_url):
    dead = f"redis://127.0.0.1:{free_port()}/0"
    settings = make_settings(tmp_path, DATABASE_URL=pg_database_url, CELERY_BROKER_URL=dead)
    answer, seconds = _probe(settings)
    assert answer.status_code == 503
    body = answer.get_json()
    assert body["status"] == "not ready"
    assert [f.split(":")[0] for f in body["failing"]] == ["broker"]
    assert body["checks"]["database"]["ok"] and body["checks"]["migrations"]["ok"]
    assert seconds < 5


def test_dead_database_is_named_and_answered_within_seconds(tmp_path, redis_url):
    dead = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/notifier"
    settings = make_settings(tmp_path, DATABASE_URL=dead, CELERY_BROKER_URL=redis_url)
    answer, seconds = _probe(settings)
    assert answer.status_code == 503
    body = answer.get_json()
    assert body["failing"][0].startswith("database: ")
    assert body["checks"]["broker"]["ok"]
    assert not body["checks"]["migrations"]["ok"]  # cannot be checked without the database
    assert seconds < 5


def test_database_behind_the_code_is_named_migrations(tmp_path, old_schema_url, redis_url):
    settings = make_settings(tmp_path, DATABASE_URL=old_schema_url, CELERY_BROKER_URL=redis_url)
    answer, _ = _probe(settings)
    assert answer.status_code == 503
    body = answer.get_json()
    assert [f.split(":")[0] for f in body["failing"]] == ["migrations"]
    assert "database at 0001" in body["failing"][0]
    assert "notifier migrate" in body["failing"][0]


def test_healthz_touches_no_dependency(tmp_path):
    settings = make_settings(
        tmp_path,
        DATABASE_URL=f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/notifier",
        CELERY_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0",
    )
    answer, seconds = _probe(settings, "/healthz")
    assert answer.status_code == 200
    assert answer.get_json() == {"status": "ok"}
    assert seconds < 1


def test_embedded_development_defaults_are_ready(tmp_path, sqlite_url):
    """`notifier dev`: SQLite database and the SQLite broker."""
    broker = f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}"
    readiness = check_readiness(
        make_settings(tmp_path, DATABASE_URL=sqlite_url, CELERY_BROKER_URL=broker)
    )
    assert readiness.ready, readiness.failing


def test_outside_internal_networks_readyz_says_only_ready_or_not(tmp_path, pg_database_url):
    """Hosts, schema versions and failure details are for the operator's own networks."""
    settings = make_settings(tmp_path, DATABASE_URL=pg_database_url,
                             CELERY_BROKER_URL="redis://127.0.0.1:1/0")  # fmt: skip
    client = create_app(settings).test_client()
    outside = client.get("/readyz", environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert outside.status_code == 503 and outside.get_json() == {"status": "not ready"}
    inside = client.get("/readyz", environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert inside.status_code == 503 and "broker" in str(inside.get_json()["failing"])
