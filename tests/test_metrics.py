"""Metrics recorded where work happens, summed across processes, and read through /metrics."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from notifier import metrics
from notifier.cli import _export_metrics_dir
from notifier.db import session_scope
from notifier.delivery.compose import Composer
from notifier.delivery.dispatch import send_deliveries
from notifier.delivery.outlets import outlets
from notifier.messages import Outcome, SendResult
from notifier.metrics import RecordedCollector
from notifier.models import Alert, Delivery, DeliveryStatus, SubscriberStatus
from notifier.timeutil import utcnow
from notifier.web import create_app
from tests import factories
from tests.conftest import make_settings
from tests.support.processes import celery_processes, wait_until
from tests.support.queue import alert_fanned_out, article_fanned_out

ROOT = Path(__file__).resolve().parent.parent
OUTCOMES = ("sent", "retry", "gone", "failed", "skipped")


def samples_of(text: str) -> dict[tuple[str, frozenset], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def in_process(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class ScriptedChannel:
    """Answers each message with the next scripted result."""

    name = "email"

    def __init__(self, *results: SendResult) -> None:
        self.results = list(results)

    def open(self) -> ScriptedChannel:
        return self

    def send_many(self, messages):
        for key, _message in messages:
            yield key, self.results.pop(0)

    def close(self) -> None:
        pass


def test_each_outcome_is_counted_once_and_sent_ones_are_timed(session, settings):
    readers = [factories.subscriber(session, f"r{n}@example.com", "news") for n in range(5)]
    story = factories.article(session, "news")
    _, ids = article_fanned_out(session, settings, story.id)
    readers[0].status = SubscriberStatus.UNSUBSCRIBED  # left after planning: skipped
    session.commit()
    channel = ScriptedChannel(
        SendResult.sent(),
        SendResult(Outcome.RETRY, "421 try later"),
        SendResult(Outcome.GONE, "550 no such user"),
        SendResult(Outcome.FAILED, "554 refused"),
    )
    outlet = replace(outlets(settings, Composer(settings))["email"], channel=channel)
    before = {o: in_process("notifier_deliveries_total", channel="email", outcome=o)
              for o in OUTCOMES}  # fmt: skip
    timed = in_process("notifier_notification_latency_seconds_count", channel="email")

    send_deliveries(session, ids, {"email": outlet}, settings)

    moved = {o: in_process("notifier_deliveries_total", channel="email", outcome=o) - before[o]
             for o in OUTCOMES}  # fmt: skip
    assert moved == dict.fromkeys(OUTCOMES, 1)
    assert in_process("notifier_notification_latency_seconds_count", channel="email") == timed + 1


def test_an_alert_is_timed_from_its_start(session, settings):
    factories.subscriber(session, "defense@example.com", "defense")
    now = utcnow()
    alert = factories.alert(session, settings.site_url, "defense", at=now,
                            created_at=now - timedelta(minutes=5))  # fmt: skip
    session.commit()
    _, ids = alert_fanned_out(session, settings, alert.id)
    started = session.get(Alert, alert.id).started_at
    outlet = replace(outlets(settings, Composer(settings))["email"],
                     channel=ScriptedChannel(SendResult.sent()))  # fmt: skip
    labels = {"channel": "email"}
    count, total = (in_process(f"notifier_notification_latency_seconds_{part}", **labels)
                    for part in ("count", "sum"))  # fmt: skip

    send_deliveries(
        session, ids, {"email": outlet}, settings, now=lambda: started + timedelta(seconds=30)
    )

    assert in_process("notifier_notification_latency_seconds_count", **labels) == count + 1
    seconds = in_process("notifier_notification_latency_seconds_sum", **labels) - total
    assert seconds == pytest.approx(30), "from started_at, not created_at"


def test_a_database_blip_after_the_commit_costs_the_timing_not_the_batch():
    """The outcome is committed; the notice's time cannot be read (no such table here)."""
    sent = Delivery(id=1, article_id=1, channel="push", status=DeliveryStatus.SENT,
                    sent_at=utcnow())  # fmt: skip
    labels = {"channel": "push", "outcome": "sent"}
    counted = in_process("notifier_deliveries_total", **labels)
    timed = in_process("notifier_notification_latency_seconds_count", channel="push")
    with Session(create_engine("sqlite://")) as session:
        metrics.delivery_recorded(session, sent)
        assert session.scalar(select(1)) == 1, "the session is usable again"
    assert in_process("notifier_deliveries_total", **labels) == counted + 1
    assert in_process("notifier_notification_latency_seconds_count", channel="push") == timed


def _record_in_a_process_of_its_own(run_dir: Path, code: str) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-c", f"from notifier import metrics\n{code}"],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(run_dir)},
        cwd=ROOT,
        check=True,
    )


def test_what_every_process_of_every_run_recorded_is_summed(tmp_path):
    root = tmp_path / "metrics"
    sent = "metrics.DELIVERIES.labels('email', 'sent').inc({})"
    _record_in_a_process_of_its_own(root / "worker-1@a", sent.format(2))
    _record_in_a_process_of_its_own(root / "worker-1@a", sent.format(3))  # a second child
    _record_in_a_process_of_its_own(
        root / "worker-2@b",
        "metrics.NOTIFICATION_LATENCY.labels('push').observe(3)\n"
        "metrics.NOTIFICATION_LATENCY.labels('push').observe(40)",
    )
    registry = CollectorRegistry()
    registry.register(RecordedCollector(root))

    samples = samples_of(generate_latest(registry).decode())

    def value(name, **labels):
        return samples[(name, frozenset(labels.items()))]

    assert value("notifier_deliveries_total", channel="email", outcome="sent") == 5
    assert value("notifier_notification_latency_seconds_count", channel="push") == 2
    assert value("notifier_notification_latency_seconds_bucket", channel="push", le="5.0") == 1
    assert value("notifier_notification_latency_seconds_bucket", channel="push", le="60.0") == 2
    assert list(RecordedCollector(tmp_path / "absent").collect()) == []


def test_a_group_of_latencies_counts_as_observing_each_one(tmp_path):
    """latencies_observed increments the histogram's buckets itself (one increment per
    bucket, not per message), in a worker's multiprocess files: every bucket, the count and
    the sum come out as Histogram.observe makes them, on bucket bounds and past the last."""
    seconds = [-0.5, 0.0, 1.0, 1.5, 2.0, 4.99, 5.0, 59.0, 60.0, 3599.5, 86400.0, 2e5, 2e5]
    root = tmp_path / "metrics"
    _record_in_a_process_of_its_own(
        root / "worker-1@a",
        f"assert hasattr(metrics.NOTIFICATION_LATENCY.labels('email'), '_buckets')\n"
        f"metrics.latencies_observed('email', {seconds!r})\n"
        f"metrics.latencies_observed('email', [])\n"
        f"for value in {seconds!r}:\n"
        f"    metrics.NOTIFICATION_LATENCY.labels('push').observe(max(0.0, value))",
    )
    registry = CollectorRegistry()
    registry.register(RecordedCollector(root))
    samples = samples_of(generate_latest(registry).decode())

    def histogram(channel: str) -> dict:
        return {(name, frozenset(dict(labels).items() - {("channel", channel)})): value
                for (name, labels), value in samples.items()
                if name.startswith("notifier_notification_latency_seconds")
                and dict(labels).get("channel") == channel}  # fmt: skip

    grouped, one_by_one = histogram("email"), histogram("push")
    assert grouped == one_by_one
    assert grouped[("notifier_notification_latency_seconds_count", frozenset())] == len(seconds)
    bucket = "notifier_notification_latency_seconds_bucket"
    assert grouped[(bucket, frozenset({("le", "5.0")}))] == 7
    assert grouped[(bucket, frozenset({("le", "+Inf")}))] == len(seconds)


def test_each_service_run_writes_in_its_own_directory_and_ended_runs_are_cleared(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "restored after the test")
    settings = make_settings(tmp_path, PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"))
    root, host = settings.metrics_dir, socket.gethostname()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    runs = {
        "live": root / f"web-{sleeper.pid}@{host}",
        "ended": root / f"worker-{ended.pid}@{host}",
        "elsewhere": root / f"worker-{ended.pid}@another-host",
        "ours before": root / f"beat-{os.getpid()}@{host}",  # pid 1 again in a container
    }
    for run in runs.values():
        run.mkdir(parents=True)
        (run / "counter_7.db").write_bytes(b"")
    try:
        run_dir = _export_metrics_dir(settings, "beat")
    finally:
        sleeper.kill()
        sleeper.wait()

    assert run_dir == runs["ours before"] and list(run_dir.iterdir()) == []
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(run_dir)
    assert not runs["ended"].exists()
    assert runs["live"].exists() and runs["elsewhere"].exists(), "not ours to judge"


def test_the_command_does_not_import_prometheus_client_before_it_exports_the_directory():
    """prometheus_client picks single- or multi-process mode when it is first imported."""
    check = "import sys, notifier.cli; assert 'prometheus_client' not in sys.modules"
    subprocess.run([sys.executable, "-c", check], cwd=ROOT, check=True)


def test_deliveries_by_a_real_worker_move_the_counters_by_exactly_n(
    tmp_path, pg_database_url, redis_url, smtp, monkeypatch
):
    """The worker's prefork children write their files; the web app sums them."""
    metrics_dir = tmp_path / "prometheus"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))  # the worker's env
    settings = make_settings(
        tmp_path,
        DATABASE_URL=pg_database_url,
        CELERY_BROKER_URL=redis_url,
        SMTP_URL=smtp.url,
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
    )
    readers = 7
    with session_scope(pg_database_url) as session:
        for n in range(readers):
            factories.subscriber(session, f"reader{n}@example.com", "news")
        story_id = factories.article(session, "news").id
        session.commit()
    app = create_app(settings)
    web = app.test_client()

    def scrape() -> dict[tuple[str, frozenset], float]:
        answer = web.get("/metrics")
        assert answer.status_code == 200, answer.text
        return samples_of(answer.text)

    def value(samples, name: str, **labels: str) -> float:
        return samples.get((name, frozenset(labels.items())), 0.0)

    sent = ("notifier_deliveries_total", {"channel": "email", "outcome": "sent"})
    timed = ("notifier_notification_latency_seconds_count", {"channel": "email"})
    fanned = ("notifier_fanout_seconds_count", {"notice": "article"})
    with celery_processes(settings, tmp_path, beat=False):
        before = scrape()
        app.extensions["notifier"]["queue"].fan_out_article(story_id)
        smtp.handler.wait_for(readers)
        wait_until(lambda: value(scrape(), sent[0], **sent[1]) >= readers, timeout=15)
        # `notifier worker` is two nodes: sending, and the feeds node it starts beside it.
        wait_until(lambda: value(scrape(), "notifier_workers_online") == 2, timeout=15)
        time.sleep(1)  # anything more would show now
        after = scrape()

    for name, labels in (sent, timed):
        assert value(after, name, **labels) - value(before, name, **labels) == readers, name
    assert value(after, fanned[0], **fanned[1]) - value(before, fanned[0], **fanned[1]) == 1
    assert value(after, "notifier_up", part="database") == 1
    assert value(after, "notifier_up", part="broker") == 1
    assert ("notifier_queue_depth", frozenset({("queue", "celery")})) in after
    assert [run.name.split("-")[0] for run in metrics_dir.iterdir()] == ["worker"]
