"""Scenario 7: SIGTERM to a worker mid fan-out, while each of its processes has a message on
the wire; then a new worker takes over."""

from __future__ import annotations

from tests.fault.scenarios import worker_terminated

RECIPIENTS = 3000  # a first chunk of 50, then three of the default 1,000: the SIGTERM finds
# one still queued
CONCURRENCY = 2
RECORD_BATCH = 10  # outcomes per commit (the default scenario settings)
CONNECTIONS = 2  # SMTP connections per worker process


def test_sigterm_to_the_worker_finishes_its_batches_and_sends_nothing_twice(
    tmp_path, pg_database_url
):
    """`docker stop` (the compose file runs `notifier worker` as PID 1): a warm shutdown."""
    figures = worker_terminated(tmp_path, pg_database_url, RECIPIENTS, CONCURRENCY)
    print(figures.line())
    notes = figures.notes
    assert notes["exit_code"] == 0 and not notes["children_killed_by_sigterm"]
    assert 0 < notes["sent_before_stop"] < RECIPIENTS, "the SIGTERM landed mid fan-out"
    # The batches in progress were finished and recorded; the rest went back to the broker.
    assert notes["unmarked_at_stop"] == 0
    assert notes["sending_at_stop"] == 0
    assert notes["expired_leases_at_stop"] == 0 and notes["expired_leases_at_end"] == 0
    assert (figures.delivered, figures.lost, figures.duplicates) == (RECIPIENTS, 0, 0)
    assert notes["final"] == {"sent": RECIPIENTS}


def test_sigterm_to_the_whole_process_group_is_recovered_like_a_crash(tmp_path, pg_database_url):
    """systemd's default KillMode=control-group signals the pool children too: Celery resets
    their SIGTERM handler, so they die mid-batch. Nothing is lost and no claim outlives its
    lease; what was sent but not yet recorded goes twice: per process at most one message
    in flight per SMTP connection and fewer than a group of outcomes."""
    figures = worker_terminated(
        tmp_path, pg_database_url, RECIPIENTS, CONCURRENCY, whole_group=True
    )
    print(figures.line())
    notes = figures.notes
    # The children died mid-batch: after the worker's warm shutdown their rows were still
    # claimed. (The parent's "exited with signal 15" line is not always written before the
    # parent itself exits, so the figures print it but the proof is the ledger.)
    assert notes["exit_code"] == 0
    assert notes["sending_at_stop"] > 0, "the children's batches were left claimed"
    assert notes["expired_leases_at_end"] == 0
    assert (figures.delivered, figures.lost, notes["strangers"]) == (RECIPIENTS, 0, 0)
    assert notes["unmarked_at_stop"] <= CONCURRENCY * (CONNECTIONS + RECORD_BATCH - 1)
    assert figures.duplicates == notes["unmarked_at_stop"]
    assert notes["final"] == {"sent": RECIPIENTS}
