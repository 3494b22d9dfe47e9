"""Fixtures for fault tests: processes and servers the test owns and may break.

Scenarios themselves live in tests/fault/scenarios.py (bench/faults.py runs them too); each
starts its own Redis, proxies, SMTP and push servers, worker and beat through harness.py.
"""

from __future__ import annotations

import fcntl
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import _clean, make_settings
from tests.fault.harness import FaultySmtp, OwnRedis, TcpProxy
from tests.support.ops_views import Shown, UnsentShown, shown_recoveries, shown_unsent


@pytest.fixture
def alone_among_kill_scenarios() -> Iterator[None]:
    """The kill scenarios count seconds against their targets: they run one at a time on a
    machine (a file lock across the pytest processes) while the rest of the suite goes on
    beside them. Two of their stacks at once on two cores, with two more pytest processes
    busy, starved each other: the digest kill took 62-69 s in the suite, 17 s alone."""
    with (Path(tempfile.gettempdir()) / "notifier-kill-scenarios.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture
def own_redis(tmp_path) -> Iterator[OwnRedis]:
    """A redis-server of this test's own (restart()/flushall()/stop() are ours to call)."""
    server = OwnRedis(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
def tcp_proxy() -> Iterator[Callable[[tuple[str, int]], TcpProxy]]:
    """Make started TCP proxies to (host, port); stop()/start() them at will."""
    proxies: list[TcpProxy] = []

    def make(target: tuple[str, int]) -> TcpProxy:
        proxies.append(TcpProxy(target).start())
        return proxies[-1]

    yield make
    for proxy in proxies:
        proxy.stop()


@pytest.fixture
def slow_smtp() -> Iterator[FaultySmtp]:
    """An SMTP server that takes 2 ms per message and can refuse, answer 421, or stall."""
    server = FaultySmtp(data_delay=0.002).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def module_database(pg_url, seeded_categories) -> Iterator[str]:
    """The test database, clean, for a scenario run once and checked by several tests."""
    _clean(pg_url, seeded_categories[pg_url])
    yield pg_url
    _clean(pg_url, seeded_categories[pg_url])


@pytest.fixture
def recoveries_shown(tmp_path, pg_database_url, redis_url) -> Callable[[], Shown]:
    """After a scenario: the recoveries its workers recorded, as `notifier status` and /ops/
    show them (read from the same database; the scenario's own broker is gone by then)."""
    settings = make_settings(tmp_path / "ops", DATABASE_URL=pg_database_url,
                             CELERY_BROKER_URL=redis_url)  # fmt: skip
    return lambda: shown_recoveries(settings)


@pytest.fixture
def unsent_shown(tmp_path, pg_database_url, redis_url) -> Callable[[], UnsentShown]:
    """After a scenario: the tasks its broker did not take, as `notifier status`, /ops/ and
    /metrics show them."""
    settings = make_settings(tmp_path / "ops-unsent", DATABASE_URL=pg_database_url,
                             CELERY_BROKER_URL=redis_url)  # fmt: skip
    return lambda: shown_unsent(settings)
