"""Scenario 1: SIGKILL a whole worker (prefork parent and children) in the middle of a fan-out
of 3,000 emails, then start a new worker at once; and SIGKILL of one pool child while its
main process lives on. Default sweep, lease, heartbeat and takeover settings."""

from __future__ import annotations

import pytest

from notifier.channels.smtp import accepted_not_handed_at_most
from tests.fault.scenarios import (
    CHILD_KILL_TARGET,
    KILL_TARGET,
    pool_child_killed,
    worker_killed,
)

pytestmark = pytest.mark.usefixtures("alone_among_kill_scenarios")

RECIPIENTS = 3000
CONCURRENCY = 2
RECORD_BATCH = 10  # outcomes per commit
CONNECTIONS = 2  # SMTP connections per worker process
# Each killed process had messages accepted by the SMTP server and not yet recorded sent: at
# most a group of outcomes being committed, and what its connections had sent before the
# commit and not handed back (one message's data and one result each, less the one just
# handed back). Those, and only those, go twice (README states it; tests/channels/
# test_smtp.py shows the channel's part).
BOUND_PER_PROCESS = RECORD_BATCH + accepted_not_handed_at_most(CONNECTIONS)


def test_sigkilled_worker_mid_fan_out_is_taken_over_within_a_minute(
    tmp_path, pg_database_url, recoveries_shown
):
    figures = worker_killed(tmp_path, pg_database_url, RECIPIENTS, CONCURRENCY, RECORD_BATCH,
                            CONNECTIONS)  # fmt: skip
    print(figures.line())
    notes = figures.notes
    # The prefork parent, its children, and the feeds node `notifier worker` runs beside them.
    assert notes["processes_killed"] == CONCURRENCY + 2, "the whole worker tree"
    assert 0 < notes["sent_before_kill"] < RECIPIENTS, "the kill landed mid fan-out"
    assert notes["sending_at_kill"] > 0, "the killed processes held claimed rows"
    assert notes["taken_over"], "the new worker took the dead worker's claims over"
    assert not notes["sweeper_requeued"], "nothing waited for the sweeper"
    assert figures.seconds <= KILL_TARGET
    assert (figures.delivered, figures.lost, notes["strangers"]) == (RECIPIENTS, 0, 0)
    assert notes["unmarked_at_kill"] >= CONCURRENCY, "the kill caught messages in flight"
    assert figures.duplicates == notes["unmarked_at_kill"] <= CONCURRENCY * BOUND_PER_PROCESS
    assert notes["final"] == {"sent": RECIPIENTS}
    # Every row the dead processes held was taken over, and the operator can see it: their
    # claims, and the rows of any task the dead worker had taken from the broker but not
    # started (noted queued, not claimed). Rows of tasks still in the broker may be claimed
    # by the new worker before its takeover check, and are not counted then.
    shown = recoveries_shown()
    taken = shown.counts["dead_worker"]
    assert notes["sending_at_kill"] <= taken <= notes["sending_at_kill"] + notes["noted_at_kill"]
    assert shown.counts == {
        "dead_worker": taken,
        "broker_lost": 0,
        "broker_unreachable": 0,
        "sweeper": 0,
    }
    assert shown.ops.startswith(f"Queued again in the last day: {taken:,} deliveries taken over")
    assert f": {taken:,} deliveries taken over from dead workers" in shown.status_line


def test_sigkilled_pool_child_is_taken_over_by_its_own_worker(
    tmp_path, pg_database_url, recoveries_shown
):
    figures = pool_child_killed(tmp_path, pg_database_url, 2000, CONCURRENCY, RECORD_BATCH,
                                CONNECTIONS)  # fmt: skip
    print(figures.line())
    notes = figures.notes
    assert notes["main_alive"] and notes["sending_at_kill"] > 0
    assert notes["taken_over"] and not notes["sweeper_requeued"]
    assert figures.seconds <= CHILD_KILL_TARGET
    assert (figures.delivered, figures.lost, notes["strangers"]) == (2000, 0, 0)
    assert figures.duplicates <= BOUND_PER_PROCESS
    assert notes["final"] == {"sent": 2000}
    shown = recoveries_shown()
    # The child's claims, and the rows of a task it had taken and not started (noted queued).
    held = notes["sending_at_kill"] + notes["noted_at_kill"]
    assert 0 < shown.counts["dead_worker"] <= held, "the child's rows"
    assert shown.counts["broker_lost"] == shown.counts["sweeper"] == 0


def test_retries_a_killed_worker_held_in_memory_go_when_due(tmp_path, pg_database_url):
    """Retries waiting as ETA tasks leave no claim: a fresh worker queues them again for
    their time (the killed worker's copies stay unacknowledged in Redis for an hour)."""
    from tests.fault.scenarios import worker_killed_holding_retries

    figures = worker_killed_holding_retries(tmp_path, pg_database_url, 100, retry_after=20)
    print(figures.line())
    assert (figures.delivered, figures.lost, figures.duplicates) == (100, 0, 0)
    assert figures.seconds <= 30.0, "within 30 s of when they were due, not an hour"
    assert figures.notes["retried_before_retry_after"] == 0
    assert not figures.notes["sweeper_requeued"]
    assert figures.notes["final"] == {"sent": 100}


def test_a_worker_restarted_under_its_name_takes_over_at_once(tmp_path, pg_database_url):
    """systemd or Docker restarting `notifier worker`: same node name, a new main process.
    The dead one's claims are known dead at once, without waiting for its heartbeat to go
    stale (WORKER_STALE_SECONDS)."""
    figures = worker_killed(tmp_path, pg_database_url, 2000, CONCURRENCY, RECORD_BATCH,
                            CONNECTIONS, same_name=True)  # fmt: skip
    print(figures.line())
    notes = figures.notes
    assert notes["sending_at_kill"] > 0 and notes["taken_over"]
    # Its heartbeat (every 10 s, stale after 30 s) goes stale 20 s after the kill at the earliest:
    # the new worker took over before that (then sending the rest takes what the machine
    # allows; a loaded CI machine took 22 s for all 2,000).
    assert notes["takeover_seconds"] < 20, "before the dead worker's heartbeat could go stale"
    assert figures.seconds <= KILL_TARGET
    assert (figures.delivered, figures.lost, notes["strangers"]) == (2000, 0, 0)
    assert figures.duplicates == notes["unmarked_at_kill"] <= CONCURRENCY * BOUND_PER_PROCESS
    assert notes["final"] == {"sent": 2000}
