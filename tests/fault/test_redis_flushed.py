"""Scenario 2: the broker loses its queues in the middle of a fan-out (FLUSHALL, or a Redis
restarted without persistence), every setting at its default."""

from __future__ import annotations

import pytest

from tests.fault.scenarios import BROKER_LOST_TARGET, redis_flushed

RECIPIENTS = 3000  # a first chunk of 50, then three of the default 1,000: work is queued
# when the broker is wiped


@pytest.mark.parametrize("restart", [False, True], ids=["flushall", "restarted-empty"])
def test_wiped_broker_mid_fan_out_is_noticed_and_everything_goes_exactly_once(
    tmp_path, pg_database_url, restart, recoveries_shown
):
    figures = redis_flushed(tmp_path, pg_database_url, RECIPIENTS, restart=restart)
    print(figures.line())
    notes = figures.notes
    assert 0 < notes["sent_before_flush"] < RECIPIENTS, "the wipe landed mid fan-out"
    assert notes["tasks_flushed"] > 0, "the wipe destroyed queued work"
    assert notes["marker_noticed"], "the workers noticed the lost queues"
    assert not notes["sweeper_requeued"], "nothing waited for the sweeper"
    assert figures.seconds <= BROKER_LOST_TARGET
    assert (figures.delivered, figures.lost, figures.duplicates) == (RECIPIENTS, 0, 0)
    assert notes["strangers"] == 0
    assert notes["final"] == {"sent": RECIPIENTS}
    shown = recoveries_shown()  # what was queued again, and why, is there for the operator
    assert 0 < shown.counts["broker_lost"] < RECIPIENTS
    assert shown.counts["dead_worker"] == shown.counts["sweeper"] == 0
    assert f"{shown.counts['broker_lost']} after the broker lost its queues" in shown.ops
    assert f"{shown.counts['broker_lost']} queued again after the broker" in shown.status_line
