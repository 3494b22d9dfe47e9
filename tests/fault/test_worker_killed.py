"""Scenario 1: SIGKILL a whole worker (prefork parent and children) in the middle of a fan-out
of 3,000 emails, then start a new worker."""

from __future__ import annotations

from tests.fault.scenarios import worker_killed

RECIPIENTS = 3000
CONCURRENCY = 2
RECORD_BATCH = 10  # outcomes per commit
CONNECTIONS = 2  # SMTP connections per worker process


def test_sigkilled_worker_mid_fan_out_loses_nothing(tmp_path, pg_database_url):
    figures = worker_killed(tmp_path, pg_database_url, RECIPIENTS, CONCURRENCY, RECORD_BATCH,
                            CONNECTIONS)  # fmt: skip
    print(figures.line())
    notes = figures.notes
    # The prefork parent, its children, and the feeds node `notifier worker` runs beside them.
    assert notes["processes_killed"] == CONCURRENCY + 2, "the whole worker tree"
    assert 0 < notes["sent_before_kill"] < RECIPIENTS, "the kill landed mid fan-out"
    assert notes["sending_at_kill"] > 0, "the killed processes held claimed rows"
    assert notes["sweeper_requeued"], "lease expiry and the sweeper brought them back"
    assert (figures.delivered, figures.lost, notes["strangers"]) == (RECIPIENTS, 0, 0)
    # Each killed child had messages accepted by the SMTP server and not yet recorded sent:
    # one in flight per connection (the server held back its reply) and fewer than a group
    # of outcomes waiting for their commit. Those, and only those, go twice.
    bound = CONCURRENCY * (CONNECTIONS + RECORD_BATCH - 1)
    assert notes["unmarked_at_kill"] >= CONCURRENCY, "the kill caught messages in flight"
    assert figures.duplicates == notes["unmarked_at_kill"] <= bound
    assert notes["final"] == {"sent": RECIPIENTS}
