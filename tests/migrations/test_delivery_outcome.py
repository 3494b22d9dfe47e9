"""Migration 0015 turns the "gone: " prefix of last_error into the outcome column: rows
written the old way, on PostgreSQL and SQLite, end up with the outcome the recorder writes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text

from notifier.db import engine_for
from notifier.models import Article, Subscriber
from notifier.schema import upgrade_database
from tests.support.databases import scratch_database

# (status, last_error) as notifier wrote them before 0015 -> the outcome they mean.
OLD_ROWS = [
    ("sent", None, "sent"),
    ("skipped", "email recipient is unsubscribed", "skipped"),
    ("skipped", "alert stopped by an editor", "skipped"),
    ("failed", "gone: SMTP 550 5.1.1 <r@example.com> No such user", "gone"),
    ("failed", "gone: HTTP 410 from https://fcm.googleapis.com: ", "gone"),
    ("failed", "failed: HTTP 403 from https://fcm.googleapis.com: bad key", "failed"),
    ("failed", "gave up after 8 attempts: SMTP 451 4.3.0 try later", "failed"),
    ("failed", "retry requested after: gone: SMTP 550 5.1.1 <r@example.com>", "failed"),
    ("failed", None, "failed"),
    ("pending", "temporary: SMTP 451 4.3.0 try later", None),
    ("pending", None, None),
    ("sending", None, None),
]


@pytest.fixture(params=["postgresql", "sqlite"])
def old_database(request, tmp_path) -> Iterator[str]:
    """A database at 0014, the revision before the outcome column."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.sqlite'}"
        upgrade_database(url, "0014")
        yield url
        engine_for(url).dispose()
    else:
        with scratch_database("notifier_0014", revision="0014") as url:
            yield url


def test_old_rows_get_the_outcome_their_status_and_error_meant(old_database):
    # Core inserts naming their columns: the ORM models also carry the columns of later
    # migrations, which a database at 0014 does not have.
    with engine_for(old_database).begin() as conn:
        story_id = conn.execute(
            Article.__table__.insert().values(guid="https://aze.media/?p=1",
                                              link="https://aze.media/1/", title="A story")
        ).inserted_primary_key[0]  # fmt: skip
        reader_ids = [
            conn.execute(
                Subscriber.__table__.insert().values(email=f"r{n}@example.com", status="active")
            ).inserted_primary_key[0]
            for n in range(len(OLD_ROWS))
        ]
    with engine_for(old_database).begin() as conn:
        for (status, last_error, _), reader_id in zip(OLD_ROWS, reader_ids, strict=True):
            conn.execute(
                text("INSERT INTO deliveries (article_id, subscriber_id, channel, status, "
                     "attempts, last_error, created_at, next_attempt_at) VALUES (:article, "
                     ":reader, 'email', :status, 1, :error, :now, :now)"),
                {"article": story_id, "reader": reader_id, "status": status,
                 "error": last_error, "now": "2026-12-01 10:00:00"},
            )  # fmt: skip

    upgrade_database(old_database)

    with engine_for(old_database).connect() as conn:
        rows = conn.execute(
            text("SELECT subscriber_id, status, last_error, outcome FROM deliveries")
        ).all()
    found = {reader_id: (status, error, outcome) for reader_id, status, error, outcome in rows}
    expected = {reader_id: row for reader_id, row in zip(reader_ids, OLD_ROWS, strict=True)}
    assert found == expected, "the outcome is data now; status and last_error stay as they were"
