"""Send pacing: GCRA delays per key, shared through Redis by every process, local otherwise.

The assertions are on the delays the pacers hand out, never on time measured around them.
Redis tests use db 15 under a namespace of their own and delete only their own keys.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from bisect import bisect_left
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from typing import NamedTuple

import pytest
import redis

from notifier.channels.pacing import (
    LocalPacer,
    RedisPacer,
    Unlimited,
    configured_rates,
    pacer_for,
    push_keys,
    wait_turn,
)
from tests.conftest import REDIS_URL, make_settings

UNREACHABLE_REDIS = "redis://127.0.0.1:1/15"  # nothing listens on port 1: refused at once
FCM = "https://fcm.googleapis.com"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def namespace() -> Iterator[str]:
    name = f"test-pacing:{uuid.uuid4().hex}:"
    yield name
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{name}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def shared(namespace) -> Iterator[Callable[..., RedisPacer]]:
    """RedisPacer factory on the test Redis; every pacer made shares the same namespace."""
    made: list[RedisPacer] = []

    def make(rates: dict[str, float], url: str = REDIS_URL, **options) -> RedisPacer:
        pacer = RedisPacer(url, rates, namespace=namespace, **options)
        made.append(pacer)
        return pacer

    yield make
    for pacer in made:
        pacer.close()


@pytest.fixture
def redis_commands(monkeypatch) -> list[tuple]:
    """Every command any Redis client sends from now on."""
    sent: list[tuple] = []
    real = redis.Redis.execute_command

    def execute_command(self, *args, **options):
        sent.append(args)
        return real(self, *args, **options)

    monkeypatch.setattr(redis.Redis, "execute_command", execute_command)
    return sent


def pacing_records(caplog, level: int) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.name == "notifier.channels.pacing" and r.levelno == level
    ]


def steps(delays: list[float]) -> list[float]:
    return [later - earlier for earlier, later in pairwise(delays)]


class Booked(NamedTuple):
    """When a reservation may send, on the monotonic clock, as the earliest and latest it can
    be: the pacer counted its delay from a moment between the call and the return, and a
    busy machine can hold the test between those (CI once saw a 50 ms pause). A slot taken
    from one side only would move by that pause; the window holds it whatever the pause."""

    earliest: float
    latest: float
    delay: float


def booked(pacer, key: str, count: int = 1) -> Booked:
    called = time.monotonic()
    delay = pacer.reserve(key, count)
    return Booked(called + delay, time.monotonic() + delay, delay)


def booked_in_turn(pacers: list, key: str) -> list[Booked]:
    return [booked(pacer, key) for pacer in pacers]


CLOCKS = 0.01  # what the clocks themselves may disagree by (Redis's TIME and ours)


def assert_apart(first: Booked, then: Booked, seconds: float) -> None:
    """`then` may send `seconds` after `first`, as far as the two windows can tell."""
    shortest, longest = then.earliest - first.latest, then.latest - first.earliest
    assert shortest - CLOCKS <= seconds <= longest + CLOCKS, (shortest, longest, seconds)


def assert_spaced(slots: list[Booked], interval: float) -> None:
    for first, then in pairwise(slots):
        assert_apart(first, then, interval)


# The algorithm, on a clock that only moves when told to.


def test_delays_grow_by_one_interval(clock):
    pacer = LocalPacer({"email": 10}, clock=clock)

    delays = [pacer.reserve("email") for _ in range(30)]

    assert delays == pytest.approx([i / 10 for i in range(30)])


def test_a_sender_that_waits_its_turn_is_spaced_evenly(clock):
    pacer = LocalPacer({"email": 4}, clock=clock)
    sent_at = []
    for _ in range(8):
        clock.advance(pacer.reserve("email"))
        sent_at.append(clock.now)

    assert steps(sent_at) == pytest.approx([0.25] * 7)


def test_idle_time_earns_no_credit(clock):
    pacer = LocalPacer({"email": 10}, clock=clock)
    for _ in range(5):
        pacer.reserve("email")

    clock.advance(60)

    assert [pacer.reserve("email") for _ in range(3)] == pytest.approx([0.0, 0.1, 0.2])


def test_burst_lets_that_many_go_at_once_after_a_pause(clock):
    pacer = LocalPacer({"email": 10}, burst=3, clock=clock)

    delays = [pacer.reserve("email") for _ in range(6)]

    assert delays == pytest.approx([0.0, 0.0, 0.0, 0.1, 0.2, 0.3])


def test_a_batch_keeps_its_slots_free_before_and_after_it(clock):
    pacer = LocalPacer({"email": 10}, clock=clock)

    batch = pacer.reserve("email", count=5)  # five sends together, from idle
    after = pacer.reserve("email")

    assert batch == pytest.approx(0.4)  # slots 0.0-0.3 stay empty before the five...
    assert after == pytest.approx(0.9)  # ...and 0.5-0.8 after them
    assert pacer.reserve("email", count=0) == 0.0


@pytest.mark.parametrize("burst", [1, 2])
def test_no_second_holds_more_than_the_rate_plus_burst(clock, burst):
    pacer = LocalPacer({"email": 10}, burst=burst, clock=clock)
    rng = random.Random(20240601)
    sent_at: list[float] = []
    for _ in range(400):
        clock.advance(rng.choice([0, 0, 0, 0, 0.01, 0.05, 0.2, 0.7, 1.5]))
        count = rng.choice([1, 1, 1, 1, 2, 3, 5])
        sent_at += [clock.now + pacer.reserve("email", count)] * count
    sent_at.sort()

    # the busiest one-second window starts at some send; 1e-6 absorbs float rounding
    busiest = max(bisect_left(sent_at, t + 1 - 1e-6) - i for i, t in enumerate(sent_at))

    assert busiest == 10 + burst - 1


def test_local_pacer_is_thread_safe(clock):
    pacer = LocalPacer({"push": 10}, clock=clock)

    with ThreadPoolExecutor(max_workers=8) as pool:
        delays = list(pool.map(lambda _: pacer.reserve("push"), range(400)))

    assert sorted(delays) == pytest.approx([i / 10 for i in range(400)])


def test_keys_are_independent(clock):
    pacer = LocalPacer({"email": 10, "push": 10, f"push:{FCM}": 10}, clock=clock)
    for _ in range(10):
        pacer.reserve("email")

    assert pacer.reserve("push") == 0.0
    assert pacer.reserve(f"push:{FCM}") == 0.0
    assert pacer.reserve("email") == pytest.approx(1.0)


def test_keys_without_a_rate_are_unlimited(clock):
    pacer = LocalPacer({"email": 0, "push": 10}, clock=clock)

    assert [pacer.reserve("email") for _ in range(5)] == [0.0] * 5
    assert pacer.reserve("push:https://updates.push.services.mozilla.com") == 0.0
    assert pacer.rates == {"push": 10.0}
    assert Unlimited().reserve("email", 100) == 0.0


def test_a_wildcard_origin_rate_is_one_budget_for_all_its_hosts(clock):
    pacer = LocalPacer({"push:https://*.notify.windows.com": 2}, clock=clock)

    first = pacer.reserve("push:https://db5.notify.windows.com")
    second = pacer.reserve("push:https://am3p.notify.windows.com")

    assert (first, second) == (0.0, pytest.approx(0.5))
    assert pacer.reserve("push:https://notify.windows.com.evil.test") == 0.0


def test_a_push_waits_for_its_service_first_then_for_all_services(clock):
    pacer = LocalPacer({f"push:{FCM}": 2, "push": 10}, clock=clock)
    to_fcm = push_keys("https://FCM.googleapis.com/")

    waits = [wait_turn(pacer, to_fcm, sleep=clock.advance) for _ in range(3)]
    other = wait_turn(pacer, push_keys("https://web.push.apple.com"), sleep=clock.advance)

    assert to_fcm == (f"push:{FCM}", "push")
    assert waits == pytest.approx([0.0, 0.5, 0.5])  # FCM's own rate
    assert other == pytest.approx(0.1)  # only "push" spacing: FCM's queue is not in its way


# Shared through Redis.


def test_redis_delays_grow_by_one_interval(shared, namespace):
    pacer = shared({"email": 10})

    assert pacer.reserve("email") == 0.0
    slots = booked_in_turn([pacer] * 29, "email")

    assert_spaced(slots, 0.1)
    assert_apart(slots[0], slots[-1], 2.8)
    with redis.Redis.from_url(REDIS_URL) as client:
        ttl_ms = client.pttl(f"{namespace}email")
    assert 0 < ttl_ms <= 3100  # gone once idle: expires when its last booked slot has passed


def test_two_processes_share_one_budget(shared):
    first, second = shared({"email": 10}), shared({"email": 10})

    slots = booked_in_turn([first, second] * 15, "email")

    assert_spaced(slots, 0.1)  # interleaved, none twice
    assert_apart(slots[0], slots[-1], 2.9)  # as long as one pacer alone
    assert_spaced(slots[::2], 0.2)


def test_threads_of_several_processes_get_distinct_slots(shared):
    pacers = [shared({"push": 20}) for _ in range(3)]

    with ThreadPoolExecutor(max_workers=6) as pool:  # six threads on the GIL: long pauses
        slots = list(pool.map(lambda i: booked(pacers[i % 3], "push"), range(60)))

    # Each slot one interval after the one before: two threads booked into one slot would be
    # 0 apart, which a short window rules out.
    assert_spaced(sorted(slots, key=lambda slot: slot.earliest + slot.latest), 0.05)


def test_redis_keys_are_independent(shared):
    pacer = shared({"email": 10, "push": 10, f"push:{FCM}": 10})
    first = booked(pacer, "email")
    for _ in range(9):
        pacer.reserve("email")

    assert pacer.reserve("push") == 0.0
    assert pacer.reserve(f"push:{FCM}") == 0.0
    assert_apart(first, booked(pacer, "email"), 1.0)  # see Booked: a pause cannot shorten it


def test_redis_burst_and_batches_match_the_local_pacer(shared):
    burst = shared({"email": 10}, burst=3)
    batch = shared({"push": 10})

    bursting = booked_in_turn([burst] * 4, "email")
    for slot, after_first in zip(bursting, [0.0, 0.0, 0.0, 0.1], strict=True):
        assert_apart(bursting[0], slot, after_first)
    first = booked(batch, "push", count=5)
    second = booked(batch, "push")
    assert first.delay == pytest.approx(0.4, abs=0.03)
    # The next one may send 0.9 s after the batch was booked (see Booked: a busy machine's
    # pause between the calls cannot shorten it; CI once saw 0.826 for a delay counted from
    # the second call).
    assert_apart(first, second, 0.5)


def test_script_is_loaded_again_when_redis_lost_it(shared, caplog):
    pacer = shared({"email": 10})
    pacer._script.sha = "0" * 40  # as after a Redis restart: EVALSHA answers NOSCRIPT

    first, then = booked_in_turn([pacer] * 2, "email")

    assert first.delay == 0.0
    assert_apart(first, then, 0.1)
    assert not pacing_records(caplog, logging.WARNING)


def test_unlimited_keys_never_touch_redis(shared, redis_commands, caplog):
    pacer = shared({"email": 10}, url=UNREACHABLE_REDIS)

    assert [pacer.reserve(key) for key in ("push", f"push:{FCM}", "push")] == [0.0] * 3
    assert redis_commands == []
    assert not pacing_records(caplog, logging.WARNING)

    pacer.reserve("email")  # a limited key does ask Redis (and finds it away)
    assert redis_commands


def test_unreachable_redis_falls_back_to_local_pacing(shared, caplog):
    pacer = shared({"email": 10}, url=UNREACHABLE_REDIS)

    slots = booked_in_turn([pacer] * 30, "email")

    assert_spaced(slots, 0.1)
    assert_apart(slots[0], slots[-1], 2.9)
    [warning] = pacing_records(caplog, logging.WARNING)  # once, not once per send
    assert "Redis does not answer" in warning.getMessage()


def test_paces_together_again_once_redis_answers(shared, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="notifier.channels.pacing")
    pacer, other = shared({"email": 10}, retry_seconds=0), shared({"email": 10})
    real_evalsha = pacer._redis.evalsha
    redis_down = True

    def evalsha(*args, **options):
        if redis_down:
            raise redis.ConnectionError("Connection refused.")
        return real_evalsha(*args, **options)

    monkeypatch.setattr(pacer._redis, "evalsha", evalsha)

    during = booked_in_turn([pacer] * 3, "email")
    redis_down = False
    after = booked_in_turn([pacer, other], "email")

    assert_spaced(during, 0.1)  # still paced, alone
    assert_apart(*after, 0.1)  # in Redis again, with the others
    assert len(pacing_records(caplog, logging.WARNING)) == 1
    assert len(pacing_records(caplog, logging.INFO)) == 1


def test_celery_spelling_of_tls_options_is_understood(shared, redis_commands):
    # as Celery documents it for rediss://; redis-py itself only knows "required"
    pacer = shared({"email": 10}, url="rediss://redis.test:6380/0?ssl_cert_reqs=CERT_REQUIRED")

    assert pacer._redis.connection_pool.connection_kwargs["ssl_cert_reqs"] == "required"
    pacer._redis.connection_pool.make_connection()  # would raise on a flag it does not know
    assert redis_commands == []


# Picking the pacer from the settings.


def test_no_rates_means_unlimited(tmp_path):
    for broker in ("redis://127.0.0.1:6379/0", "sqla+sqlite:////tmp/broker.sqlite"):
        settings = make_settings(tmp_path, CELERY_BROKER_URL=broker)
        assert isinstance(pacer_for(settings), Unlimited)


@pytest.mark.parametrize("broker", ["redis://127.0.0.1:6379/0", "rediss://redis.test:6380/0"])
def test_a_redis_broker_shares_rates_through_redis(tmp_path, broker, redis_commands):
    settings = make_settings(
        tmp_path,
        CELERY_BROKER_URL=broker,
        EMAIL_RATE_PER_SECOND="14",
        PUSH_RATE_PER_SECOND="2000",
        PUSH_ORIGIN_RATES="https://FCM.googleapis.com/=1000,https://*.notify.windows.com=50",
        WORKER_CONCURRENCY="4",
    )

    pacer = pacer_for(settings)

    assert isinstance(pacer, RedisPacer)
    assert pacer.rates == {
        "email": 14.0,
        "push": 2000.0,
        f"push:{FCM}": 1000.0,
        "push:https://*.notify.windows.com": 50.0,
    }
    # alone, each of the host's 4 worker processes keeps a quarter
    assert pacer.fallback.rates == {
        "email": 3.5,
        "push": 500.0,
        f"push:{FCM}": 250.0,
        "push:https://*.notify.windows.com": 12.5,
    }
    assert redis_commands == []  # nothing connects until a limited send is reserved
    pacer.close()


def test_another_broker_paces_each_process_locally(tmp_path):
    settings = make_settings(
        tmp_path,
        CELERY_BROKER_URL=f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}",
        EMAIL_RATE_PER_SECOND="6",
        WORKER_CONCURRENCY="2",
    )

    pacer = pacer_for(settings)

    assert isinstance(pacer, LocalPacer)
    assert pacer.rates == {"email": 3.0}
    assert configured_rates(settings) == {"email": 6.0}
    assert_apart(*booked_in_turn([pacer] * 2, "email"), 1 / 3)
    assert pacer.reserve("push") == 0.0


def test_a_rabbitmq_broker_paces_through_redis_url(tmp_path, redis_commands):
    """RabbitMQ carries the tasks; Redis keeps its other job, the shared send rates."""
    settings = make_settings(
        tmp_path,
        CELERY_BROKER_URL="amqp://guest:guest@127.0.0.1:5672//",
        REDIS_URL="redis://127.0.0.1:6379/3",
        EMAIL_RATE_PER_SECOND="14",
    )
    pacer = pacer_for(settings)
    assert isinstance(pacer, RedisPacer) and pacer.rates == {"email": 14.0}
    pacer.close()
    without = make_settings(tmp_path, CELERY_BROKER_URL="amqp://127.0.0.1//",
                            EMAIL_RATE_PER_SECOND="14")  # fmt: skip
    assert isinstance(pacer_for(without), LocalPacer), "no Redis: each process alone"


def test_redis_url_must_be_redis(tmp_path):
    from notifier.config import ConfigError

    with pytest.raises(ConfigError, match="REDIS_URL must start with redis://"):
        make_settings(tmp_path, REDIS_URL="amqp://127.0.0.1//")
