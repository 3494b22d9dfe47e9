"""When retries are due: Retry-After, backoff, and grouping rows by due time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from notifier.delivery.queueing import due_groups
from notifier.delivery.recording import RetryPolicy

POLICY = RetryPolicy(8, 30.0, 3600.0, retry_after_max_seconds=600.0,
                     retry_after_jitter_seconds=1.0)  # fmt: skip


@pytest.mark.parametrize("attempts", [1, 2])
def test_retry_after_is_honoured_plus_jitter_never_before(attempts):
    delays = [POLICY.retry_delay(attempts, 5.0) for _ in range(200)]
    assert all(5.0 <= d <= 6.0 for d in delays)
    assert max(delays) - min(delays) > 0.1, "jitter spreads the retries"


def test_backoff_grows_under_retry_after_from_the_third_failure_in_a_row():
    assert all(15.0 <= POLICY.retry_delay(3, 5.0) <= 30.0 for _ in range(50))
    assert all(120.0 <= POLICY.retry_delay(6, 5.0) <= 240.0 for _ in range(50))


@pytest.mark.parametrize("retry_after", [1e12, float("inf"), float("nan"), -1.0, None])
def test_absurd_retry_after_is_cut_or_ignored(retry_after):
    delay = POLICY.retry_delay(1, retry_after)
    assert 0 < delay <= 601.0


def test_without_retry_after_the_backoff_grows_exponentially():
    assert all(15.0 <= POLICY.retry_delay(1, None) <= 30.0 for _ in range(50))
    assert all(30.0 <= POLICY.retry_delay(2, None) <= 60.0 for _ in range(50))


def test_rows_are_grouped_by_due_time_and_each_group_goes_at_its_last_member():
    t0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    due = {
        1: t0,
        2: t0 + timedelta(seconds=0.7),
        3: t0 + timedelta(seconds=5),
        4: t0 + timedelta(seconds=5.2),
        5: t0 + timedelta(minutes=30),
    }
    assert due_groups(due, 1.0) == [
        (t0 + timedelta(seconds=0.7), [1, 2]),
        (t0 + timedelta(seconds=5.2), [3, 4]),
        (t0 + timedelta(minutes=30), [5]),
    ]
    assert due_groups({}, 1.0) == []
