"""A push service answers 429 Retry-After: 5 for 10 s mid fan-out, every setting at its
default: the retries go when the service said, not after the 30 s base backoff nor when the
sweeper comes by."""

from __future__ import annotations

from tests.fault.scenarios import push_throttled_for

SUBSCRIPTIONS = 300
RETRY_AFTER = 5
THROTTLED_FOR = 10.0
TARGET = 30.0  # everyone within 30 s of the end of the 429s


def test_everyone_gets_the_push_soon_after_the_429s_end_and_never_before_retry_after(
    tmp_path, pg_database_url
):
    figures = push_throttled_for(tmp_path, pg_database_url, SUBSCRIPTIONS, RETRY_AFTER,
                                 THROTTLED_FOR)  # fmt: skip
    print(figures.line())
    notes = figures.notes
    assert notes["throttled_answers"] > 0, "the fan-out met the 429s"
    assert (figures.delivered, figures.lost, figures.duplicates) == (SUBSCRIPTIONS, 0, 0)
    assert figures.seconds <= TARGET, f"last push {figures.seconds:.1f}s after the 429s ended"
    assert notes["retried_before_retry_after"] == 0
    assert notes["origin_requests_during_backoff"] == 0
    assert not notes["sweeper_requeued"], "normal retries never wait for the sweeper"
    assert notes["final"] == {"sent": SUBSCRIPTIONS}
