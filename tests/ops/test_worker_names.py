"""Two live workers under one node name would each take the other for a restarted worker and
hand its claimed rows over while it still sends them: readers would get messages twice. A
worker does not start while another one is alive under its name; a restarted one does."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import pytest
from sqlalchemy import update

from notifier.config import Settings
from notifier.db import session_scope
from notifier.models import WorkerHeartbeat
from notifier.ops.workers import name_in_use, record_heartbeat, this_machine
from notifier.timeutil import utcnow
from tests.conftest import make_settings
from tests.support.processes import Process, settings_env

NAME = "twin@host"
STALE, HEARTBEAT = Settings.worker_stale_seconds, Settings.worker_heartbeat_seconds  # defaults


def _row(url: str, **values) -> None:
    record_heartbeat(url, NAME, 4, 0, utcnow())
    with session_scope(url) as session:
        session.execute(update(WorkerHeartbeat).where(WorkerHeartbeat.hostname == NAME)
                        .values(**values))  # fmt: skip
        session.commit()


class Waits:
    """Stands in for time.sleep: records the wait and may play the other worker's beat."""

    def __init__(self, during=None) -> None:
        self.seconds: list[float] = []
        self.during = during

    def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)
        if self.during:
            self.during()


@pytest.fixture
def sleeper():
    """A process whose command line looks like a worker's, alive for the test."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                                "notifier", "worker"])  # fmt: skip
    yield process
    process.kill()
    process.wait()


def test_a_name_nobody_uses_or_a_stale_row_is_free(database_url):
    waits = Waits()
    assert name_in_use(database_url, NAME, STALE, HEARTBEAT, waits) is None
    _row(database_url, pid=1, machine="elsewhere/boot", seen_at=utcnow() - timedelta(hours=1))
    assert name_in_use(database_url, NAME, STALE, HEARTBEAT, waits) is None
    assert waits.seconds == [], "no wait for a row nobody has written lately"


def test_a_restart_on_this_machine_is_free_at_once(database_url):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    _row(database_url, pid=gone.pid, machine=this_machine())
    waits = Waits()
    assert name_in_use(database_url, NAME, STALE, HEARTBEAT, waits) is None
    assert waits.seconds == []
    _row(database_url, pid=os.getpid(), machine=this_machine())  # its own row
    assert name_in_use(database_url, NAME, STALE, HEARTBEAT, waits) is None


def test_a_live_worker_of_this_machine_under_the_name_is_refused(database_url, sleeper):
    _row(database_url, pid=sleeper.pid, machine=this_machine())
    problem = name_in_use(database_url, NAME, STALE, HEARTBEAT, Waits())
    assert problem is not None
    assert (
        f"another worker named {NAME} is running on this machine as process {sleeper.pid}"
        in problem
    )
    assert "-n NAME@%h" in problem


def test_another_machine_is_refused_only_if_it_keeps_beating(database_url):
    _row(database_url, pid=4242, machine="other-host/boot")
    quiet = Waits()
    assert name_in_use(database_url, NAME, STALE, HEARTBEAT, quiet) is None, "it stopped"
    assert quiet.seconds == [HEARTBEAT + 1.0]

    def beats_again() -> None:
        _row(database_url, pid=4242, machine="other-host/boot", seen_at=utcnow())

    _row(database_url, pid=4242, machine="other-host/boot", seen_at=utcnow() - timedelta(seconds=5))
    problem = name_in_use(database_url, NAME, STALE, HEARTBEAT, Waits(during=beats_again))
    assert problem is not None and "on other-host/boot as process 4242" in problem


def test_a_second_worker_under_a_running_ones_name_exits_with_the_reason(
    tmp_path, pg_database_url, redis_url
):
    settings = make_settings(tmp_path, DATABASE_URL=pg_database_url, CELERY_BROKER_URL=redis_url)
    env = settings_env(settings)
    first = Process("first", ["worker", "--concurrency=1", "-n", NAME], env, tmp_path)
    try:
        first.wait_for_output("ready.", timeout=60)
        second = Process("second", ["worker", "--concurrency=1", "-n", NAME], env, tmp_path)
        try:
            assert second.popen.wait(timeout=60) != 0
        finally:
            second.stop()
        assert f"another worker named {NAME} is running on this machine" in second.output()
        assert "Traceback" not in second.output()
        assert first.popen.poll() is None, "the first one keeps running"
    finally:
        first.stop()
