"""Send-rate limits per channel and per SMTP server or push service, shared by every worker.

Channels ask before each send: `delay = pacer.reserve(key)` books one send on `key` and
says how many seconds to wait before making it (0.0: now). Keys are "email" (the SMTP
server), "push" (every push service together) and "push:<origin>" (one push service).
A key with no configured rate costs nothing and always answers 0.0.

The algorithm is GCRA (generic cell rate algorithm) in its "virtual scheduling" form: each
key keeps one number, its theoretical arrival time (TAT), the earliest time the next send
is due. A reservation of n sends made together at once is placed at

    send = max(now, max(TAT, now) + (n - 1) / rate - tolerance)
    TAT  = max(TAT, send) + n / rate

and always succeeds: the caller waits `send - now`, then sends. Idle time earns no credit
(TAT never lags behind now), so after a pause the first send goes at once and the next ones
are spaced 1/rate apart again.

Burst: `burst` sends may go back to back after a pause (tolerance = (burst - 1) / rate).
The default is 1, no burst at all: a provider that allows "14 per second" may well count
over any sliding second, and with a burst of b some one-second window can hold rate + b - 1
sends. With burst 1 no half-open window of length w holds more than rate * w + 1 sends (so
at most 14 in any second at 14/s), including when sends are reserved n at a time: a batch
of n leaves the n - 1 slots before it and after it empty, so batching costs throughput and
never breaks the limit. Reserve one send at a time to keep the full rate. (Across hosts
these are the booked times: each process starts its wait when Redis's answer reaches it, so
differences in network latency between hosts, a millisecond or so, blur the spacing.)

Wait on one key at a time. A push to a service that has its own rate waits for that one
first, then for "push" (see `push_keys` and `wait_turn`): waiting on "push" only once the
service's own turn has come keeps a slow service's queue from booking "push" far ahead,
which would hold back the pushes to every other service. The price: while "push" itself is
the bottleneck, a service's turn is used up to that second wait late, so in some window that
service can get about (second wait x its rate) more pushes than its own rate. Leaving "push"
unset avoids it; setting it well above the per-service rates makes it rare.

`RedisPacer` shares each key's TAT through Redis (the Celery broker when that is Redis): one
atomic Lua script per reservation reads and moves it, timed by the Redis server's clock so
the clocks of the worker hosts do not matter, and the key expires once its TAT has passed
(an expired key and a TAT in the past mean the same thing). When Redis does not answer the
send still goes: the process paces on its own (`LocalPacer`) and says so once per outage.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

if TYPE_CHECKING:
    from notifier.config import Settings

log = logging.getLogger(__name__)

EMAIL_KEY = "email"
PUSH_KEY = "push"
NAMESPACE = "notifier:pace:"  # Redis keys: notifier:pace:email, notifier:pace:push:https://…


class Pacer(Protocol):
    def reserve(self, key: str, count: int = 1) -> float:
        """Book `count` sends on `key`; seconds the caller must wait before sending them."""
        ...


class Unlimited:
    """No configured rate: every send may go now."""

    def reserve(self, key: str, count: int = 1) -> float:
        return 0.0


def push_origin_key(origin: str) -> str:
    """The key of one push service, from an origin as EndpointPolicy.origin_of gives it."""
    return f"{PUSH_KEY}:{origin.rstrip('/').lower()}"


def push_keys(origin: str) -> tuple[str, str]:
    """What a push to `origin` waits for, in order: that push service, then all of them."""
    return push_origin_key(origin), PUSH_KEY


def wait_turn(
    pacer: Pacer, keys: Iterable[str], sleep: Callable[[float], None] = time.sleep
) -> float:
    """Wait until one send may go on every key, one key after the other; seconds waited.

    For threads. Asynchronous senders do the same with their own sleep between the keys.
    """
    waited = 0.0
    for key in keys:
        delay = pacer.reserve(key)
        if delay > 0:
            sleep(delay)
            waited += delay
    return waited


class _Limits:
    """Which rate applies to a key: its own, or else the first wildcard pattern matching it
    ("push:https://*.notify.windows.com" covers every WNS host, all sharing that budget)."""

    def __init__(self, rates: Mapping[str, float], burst: int) -> None:
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}.")
        self.rates = {k: float(r) for k, r in rates.items() if r > 0 and math.isfinite(r)}
        self.burst = burst
        self._patterns = [
            (re.compile(".*".join(re.escape(part) for part in key.split("*"))), key)
            for key in self.rates
            if "*" in key
        ]
        self._resolved: dict[str, str | None] = {}

    def key_for(self, key: str) -> str | None:
        """The configured key whose rate `key` spends, or None: no limit."""
        if key in self.rates:
            return key
        if not self._patterns:
            return None
        try:
            return self._resolved[key]
        except KeyError:
            pass
        found = next((name for pattern, name in self._patterns if pattern.fullmatch(key)), None)
        if len(self._resolved) < 10_000:  # distinct push hosts are few; never grow unbounded
            self._resolved[key] = found
        return found

    def interval(self, key: str) -> float:
        return 1.0 / self.rates[key]


class LocalPacer:
    """The same algorithm for one process (any number of threads): the development mode
    with its SQLite broker, and what RedisPacer falls back on while Redis is away."""

    def __init__(
        self,
        rates: Mapping[str, float],
        *,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits = _Limits(rates, burst)
        self._clock = clock
        self._tat: dict[str, float] = {}
        self._lock = threading.Lock()

    @property
    def rates(self) -> dict[str, float]:
        """Sends per second per key (only keys with a limit)."""
        return dict(self._limits.rates)

    def reserve(self, key: str, count: int = 1) -> float:
        name = self._limits.key_for(key)
        if name is None or count < 1:
            return 0.0
        interval = self._limits.interval(name)
        tolerance = (self._limits.burst - 1) * interval
        with self._lock:
            now = self._clock()
            tat = max(self._tat.get(name, now), now)
            send = max(now, tat + (count - 1) * interval - tolerance)
            self._tat[name] = max(tat, send) + count * interval
        return send - now


# KEYS[1]: the key's TAT in microseconds of Redis server time. ARGV: emission interval and
# tolerance in microseconds, count. Returns the microseconds to wait. Times are whole
# microseconds (exact in a double until the year 2255), rounded up: never early.
_GCRA_SCRIPT = """
if redis.replicate_commands then redis.replicate_commands() end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local count = tonumber(ARGV[3])
local tat = math.max(tonumber(redis.call('GET', KEYS[1])) or now, now)
local send = math.max(now, tat + (count - 1) * interval - tolerance)
tat = math.ceil(math.max(tat, send) + count * interval)
local ttl_ms = math.floor((tat - now) / 1000) + 1
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', string.format('%d', ttl_ms))
return math.ceil(send - now)
"""


class RedisPacer:
    """Rates shared by every process through Redis; see the module docstring.

    `fallback` paces while Redis does not answer (by default a LocalPacer with the same
    rates); Redis is asked again `retry_seconds` after a failure, by one caller at a time.
    """

    def __init__(
        self,
        redis_url: str,
        rates: Mapping[str, float],
        *,
        burst: int = 1,
        namespace: str = NAMESPACE,
        fallback: LocalPacer | None = None,
        timeout_seconds: float = 1.0,
        retry_seconds: float = 5.0,
    ) -> None:
        self._limits = _Limits(rates, burst)
        self.namespace = namespace
        self.fallback = fallback or LocalPacer(rates, burst=burst)
        self.retry_seconds = retry_seconds
        # Nothing connects here: the first reservation on a limited key does. One quick retry
        # (a pooled connection Redis has closed), then the fallback: never seconds of backoff.
        self._redis = redis.Redis.from_url(
            redis_py_url(redis_url),
            socket_connect_timeout=timeout_seconds,
            socket_timeout=timeout_seconds,
            retry=Retry(NoBackoff(), 1),
        )
        self._script = self._redis.register_script(_GCRA_SCRIPT)  # EVALSHA, loads if missing
        self._lock = threading.Lock()
        self._retry_at: float | None = None  # monotonic; None while Redis answers
        self._warned = False

    @property
    def rates(self) -> dict[str, float]:
        """Sends per second per key (only keys with a limit)."""
        return dict(self._limits.rates)

    def reserve(self, key: str, count: int = 1) -> float:
        name = self._limits.key_for(key)
        if name is None or count < 1:
            return 0.0
        if self._may_ask_redis():
            interval_us = self._limits.interval(name) * 1e6
            tolerance_us = (self._limits.burst - 1) * interval_us
            try:
                micros = self._script(
                    keys=[self.namespace + name], args=[interval_us, tolerance_us, count]
                )
            except Exception as error:  # pacing must never fail a send, whatever went wrong
                self._redis_failed(error)
            else:
                self._redis_answered()
                return max(0.0, int(micros) / 1e6)
        return self.fallback.reserve(key, count)

    def close(self) -> None:
        self._redis.close()

    def _may_ask_redis(self) -> bool:
        with self._lock:
            if self._retry_at is None:
                return True
            now = time.monotonic()
            if now < self._retry_at:
                return False
            self._retry_at = now + self.retry_seconds  # this caller tries; the others wait
            return True

    def _redis_failed(self, error: Exception) -> None:
        with self._lock:
            self._retry_at = time.monotonic() + self.retry_seconds
            warn, self._warned = not self._warned, True
        if warn:
            log.warning(
                "send pacing: Redis does not answer (%s: %s); this process paces its sends "
                "alone until it does",
                type(error).__name__,
                error,
            )

    def _redis_answered(self) -> None:
        if self._retry_at is None:
            return
        with self._lock:
            recovered, self._retry_at, self._warned = self._warned, None, False
        if recovered:
            log.info("send pacing: Redis answers again; sends are paced together again")


def redis_py_url(url: str) -> str:
    """Celery's spelling `ssl_cert_reqs=CERT_REQUIRED` as redis-py's `ssl_cert_reqs=required`."""
    parts = urlsplit(url)
    query = [
        (name, value.removeprefix("CERT_").lower() if name == "ssl_cert_reqs" else value)
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit(parts._replace(query=urlencode(query)))


def configured_rates(settings: Settings) -> dict[str, float]:
    """The pacing keys with a limit in these settings, and their sends per second."""
    rates: dict[str, float] = {}
    if settings.email_rate_per_second > 0:
        rates[EMAIL_KEY] = settings.email_rate_per_second
    if settings.push_rate_per_second > 0:
        rates[PUSH_KEY] = settings.push_rate_per_second
    for origin, rate in settings.push_origin_rates:
        rates[push_origin_key(origin)] = rate
    return rates


def pacer_for(settings: Settings) -> Pacer:
    """Unlimited without rates; shared through Redis (REDIS_URL, or the broker when it is
    Redis); else local.

    A process pacing alone (SQLite broker, or Redis away) keeps 1/WORKER_CONCURRENCY of each
    rate, so the worker processes of one host stay within the rate together.
    """
    rates = configured_rates(settings)
    if not rates:
        return Unlimited()
    share = 1 / max(1, settings.worker_concurrency)
    local = LocalPacer({key: rate * share for key, rate in rates.items()})
    if settings.redis_url:  # REDIS_URL, or the broker when it is Redis
        return RedisPacer(settings.redis_url, rates, fallback=local)
    return local
