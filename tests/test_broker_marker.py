"""The marker that tells workers the broker lost its queues (real Redis)."""

from __future__ import annotations

import redis

from notifier.broker_marker import MARKER_KEY, BrokerMarker


def test_a_missing_marker_is_claimed_by_exactly_one_caller_per_loss(redis_url):
    first, second = BrokerMarker(redis_url), BrokerMarker(redis_url)
    try:
        # A broker never seen before: it may be new, or wiped while nobody watched.
        assert [first.check(), second.check()] == ["unknown", None]
        assert first.check() is None and second.check() is None
        with redis.Redis.from_url(redis_url) as client:
            client.flushdb()  # what FLUSHALL or an empty restart does to it
        assert [second.check(), first.check()] == ["lost", None]
        with redis.Redis.from_url(redis_url) as client:
            assert client.exists(MARKER_KEY)
    finally:
        first.close()
        second.close()


def test_a_broker_that_does_not_answer_is_not_taken_for_lost():
    marker = BrokerMarker("redis://127.0.0.1:1/0", timeout_seconds=0.5)
    assert marker.check() is None
    marker.close()
