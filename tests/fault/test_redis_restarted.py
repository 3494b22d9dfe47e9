"""Scenario 5: Redis is replaced by a new, empty server on the same port while the workers are
idle; an article published afterwards is polled by beat and delivered by the same worker."""

from __future__ import annotations

from tests.fault.scenarios import redis_restarted

RECIPIENTS = 50


def test_workers_and_beat_carry_on_after_redis_restart(tmp_path, pg_database_url):
    figures = redis_restarted(tmp_path, pg_database_url, RECIPIENTS, pause=1.0)
    print(figures.line())
    notes = figures.notes
    assert notes["worker_saw_loss"], "the worker noticed the broker going away"
    assert notes["worker_alive"] and notes["beat_alive"], "nothing was restarted"
    assert (figures.delivered, figures.lost, figures.duplicates) == (RECIPIENTS, 0, 0)
    assert notes["final"] == {"sent": RECIPIENTS}
