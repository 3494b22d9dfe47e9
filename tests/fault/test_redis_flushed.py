"""Scenario 2: FLUSHALL on the broker in the middle of a fan-out."""

from __future__ import annotations

from tests.fault.scenarios import redis_flushed

RECIPIENTS = 300


def test_flushed_broker_mid_fan_out_delivers_everything_exactly_once(tmp_path, pg_database_url):
    figures = redis_flushed(tmp_path, pg_database_url, RECIPIENTS)
    print(figures.line())
    assert 0 < figures.notes["sent_before_flush"] < RECIPIENTS, "the flush landed mid fan-out"
    assert (figures.delivered, figures.lost, figures.duplicates) == (RECIPIENTS, 0, 0)
    assert figures.notes["tasks_flushed"] > 0, "the flush destroyed queued work"
    assert figures.notes["sweeper_requeued"], "the sweeper found it again in the database"
    assert figures.notes["strangers"] == 0
    assert figures.notes["final"] == {"sent": RECIPIENTS}
