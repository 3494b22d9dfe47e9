"""The morning digest through a kill -9 of the whole worker: the digests due at once are
planned by beat's planner and its helpers in batches while the first ones are sent; the
worker (planners and senders) is SIGKILLed mid-planning, a new one starts. Each reader gets
one digest, planned once: what the killed planners had not committed is planned at the next
tick, and only messages sent but not yet recorded go twice, as for articles."""

from __future__ import annotations

import pytest

from notifier.channels.smtp import accepted_not_handed_at_most
from tests.fault.scenarios import KILL_TARGET, digest_worker_killed

pytestmark = pytest.mark.usefixtures("alone_among_kill_scenarios")

READERS = 2000
CONCURRENCY = 2
RECORD_BATCH = 10  # outcomes per commit
CONNECTIONS = 2  # SMTP connections per worker process
# as in test_worker_killed.py
BOUND_PER_PROCESS = RECORD_BATCH + accepted_not_handed_at_most(CONNECTIONS)


def test_a_killed_worker_mid_morning_still_gives_each_reader_one_digest(tmp_path, pg_database_url):
    figures = digest_worker_killed(tmp_path, pg_database_url, READERS, CONCURRENCY,
                                   RECORD_BATCH, CONNECTIONS)  # fmt: skip
    print(figures.line())
    notes = figures.notes
    assert notes["processes_killed"] == CONCURRENCY + 2, "the whole worker tree"
    at_kill = notes["at_kill"]
    assert at_kill["digests"] > 0 and at_kill["schedules due"] > 0, "the kill landed mid-planning"
    assert figures.seconds <= KILL_TARGET
    assert (figures.delivered, figures.lost, notes["strangers"]) == (READERS, 0, 0)
    assert figures.duplicates == notes["unmarked_at_kill"] <= CONCURRENCY * BOUND_PER_PROCESS
    final = notes["final"]
    assert final == {"deliveries sent": READERS, "digests": READERS,
                     "readers with a digest": READERS, "schedules due": 0}  # fmt: skip
