"""Scenario 1: SIGKILL a whole worker (prefork parent and children) in the middle of a fan-out
of 3,000 emails, then start a new worker."""

from __future__ import annotations

from tests.fault.scenarios import worker_killed

RECIPIENTS = 3000
CONCURRENCY = 2


def test_sigkilled_worker_mid_fan_out_loses_nothing(tmp_path, pg_database_url):
    figures = worker_killed(tmp_path, pg_database_url, RECIPIENTS, CONCURRENCY)
    print(figures.line())
    notes = figures.notes
    assert notes["processes_killed"] == CONCURRENCY + 1, "prefork parent and its children"
    assert 0 < notes["sent_before_kill"] < RECIPIENTS, "the kill landed mid fan-out"
    assert notes["sending_at_kill"] > 0, "the killed processes held claimed rows"
    assert notes["sweeper_requeued"], "lease expiry and the sweeper brought them back"
    assert (figures.delivered, figures.lost, notes["strangers"]) == (RECIPIENTS, 0, 0)
    # Each killed child had one message accepted by the SMTP server and not yet recorded sent
    # (the kill came while the server held back its reply): those, and only those, go twice.
    assert notes["unmarked_at_kill"] == CONCURRENCY
    assert figures.duplicates == notes["unmarked_at_kill"] <= CONCURRENCY
    assert notes["final"] == {"sent": RECIPIENTS}
