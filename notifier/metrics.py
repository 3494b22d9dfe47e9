"""Every metric notifier exposes at /metrics, in one place.

Counters and histograms are recorded where things happen (dispatch, fan-out). `notifier web`,
`worker` and `beat` set PROMETHEUS_MULTIPROC_DIR before prometheus_client is imported, so each
process (gunicorn worker, Celery child) writes its own file and /metrics sums them all. Gauges
about state (queues, feeds, workers, audiences) are read from the database and the broker when
Prometheus scrapes.
"""

from __future__ import annotations

import collections
import enum
import logging
import math
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from kombu.exceptions import ChannelError
from kombu.exceptions import OperationalError as BrokerError
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import Engine, event, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import InstrumentedAttribute, Session

from notifier.config import Settings
from notifier.db import session_scope
from notifier.delivery.unsent import unsent_summary
from notifier.models import (
    Alert,
    Article,
    Delivery,
    DeliveryStatus,
    Digest,
    PushStatus,
    PushSubscription,
    Subscriber,
    SubscriberStatus,
)
from notifier.ops.deliverability import Thresholds, daily_rates, rates_since
from notifier.ops.feeds import feed_health
from notifier.ops.held import held_for_quiet_hours
from notifier.ops.queues import queue_depths
from notifier.ops.recoveries import recovery_summary
from notifier.ops.retention_runs import retention_summary
from notifier.ops.skips import named_skip_counts
from notifier.ops.sweeps import sweep_summary
from notifier.ops.task_failures import task_failures_by_task
from notifier.ops.workers import worker_states
from notifier.timeutil import utcnow

if TYPE_CHECKING:
    from celery import Celery

log = logging.getLogger(__name__)
# What can be kept unsent: each has a series from the start, zero or not.
UNSENT_TASKS = ("send_deliveries", "fan_out_article", "fan_out_alert", "poll_feed")

# Recorded by the process that does the work (one file per process in multiprocess mode).

DELIVERIES = Counter(
    "notifier_deliveries",
    "Deliveries recorded, by channel and outcome (sent, retry, gone, failed, skipped, held).",
    ["channel", "outcome"],
)
"""One per outcome committed: a delivery retried twice then sent counts retry 2, sent 1."""

FANOUT_SECONDS = Histogram(
    "notifier_fanout_seconds",
    "Time to plan a notice's deliveries and queue their chunks, by notice (article, alert).",
    ["notice"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
"""How long readers wait before the first chunk can even start."""

NOTIFICATION_LATENCY = Histogram(
    "notifier_notification_latency_seconds",
    "From article first seen (or alert started) to the message accepted, by channel.",
    ["channel"],
    buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 86400),
)
"""What readers feel: how late the news reaches them (retries included)."""

TASK_FAILURES = Counter(
    "notifier_task_failures",
    "Tasks that failed for good (no retry left), by task; each is kept with its cause.",
    ["task"],
)
"""Anything above zero is work that did not happen: see /ops/ or `notifier status`."""

SWEEP_REQUEUED = Counter(
    "notifier_sweep_requeued",
    "Work the sweeper found lost and queued again, by kind (articles, alerts, deliveries).",
    ["kind"],
)
"""The sweeper is a safety net: zero in normal operation."""

BOUNCE_REPORTS = Counter(
    "notifier_bounce_reports",
    "Returned messages processed, by way in (listener, ...) and kind (hard, soft, complaint, "
    "delay, auto_reply, unrelated, replay).",
    ["source", "kind"],
)
"""What comes back: a rise in hard or complaint is a reputation problem on its way."""

BOUNCE_REPORTS_UNPROCESSED = Counter(
    "notifier_bounce_reports_unprocessed",
    "Returned messages the bounce listener (answered 451, so the sender retries) or the "
    "mailbox reader (left in the mailbox, read again) could not process and relays' webhook "
    "calls not processed, by source (listener, imap, ses, postmark, "
    "sendgrid, mailgun) and cause: database (unreachable), error (anything else), refused "
    "(webhook secret or signature wrong), payload (webhook body unreadable) or fetch (SNS's "
    "certificate or confirmation URL out of reach), or unsubscribed (SNS removed our "
    "subscription: SES's reports stop); each is kept "
    "with its cause.",
    ["source", "cause"],
)
"""Zero in normal operation; each is also a task failure (task "listener", "imap" or
"webhook_<relay>") with its cause."""

DB_STATEMENTS = Counter(
    "notifier_db_statements",
    "SQL statements sent to the database by notifier processes (fan-out cost per delivery).",
)
"""Divided by deliveries, says how many database round trips one delivery costs."""


RECOVERED = Counter(
    "notifier_deliveries_recovered",
    "Deliveries queued again at once after a fault, by cause: dead_worker (its claims were "
    "taken over), broker_lost (the broker lost its queues), broker_unreachable (the broker "
    "did not take them when they were queued).",
    ["cause"],
)
"""Zero in normal operation; each fault shows as a step, without waiting for the sweeper."""


UNSENT = Counter(
    "notifier_unsent_tasks",
    "Tasks the broker did not take when sent (down or unreachable), by task: each is kept in "
    "the database and handed over by a worker as soon as the broker answers.",
    ["task"],
)
"""Zero in normal operation; a broker outage shows as a step here, then in recoveries."""


def task_not_handed_over(task_name: str) -> None:
    UNSENT.labels(task_name.rpartition(".")[2]).inc()


def deliveries_recovered(cause: str, count: int) -> None:
    if count:
        RECOVERED.labels(cause).inc(count)


@event.listens_for(Engine, "before_cursor_execute")
def _count_statement(*_args) -> None:
    DB_STATEMENTS.inc()


def delivery_recorded(session: Session, delivery: Delivery) -> None:
    """Count what just became of a delivery, from its committed row (the reason is data);
    time a sent one from its notice."""
    outcome = _outcome(delivery)
    DELIVERIES.labels(delivery.channel, outcome).inc()
    if outcome == "sent" and delivery.sent_at is not None:
        since = _notice_time(session, delivery)
        if since is not None:
            seconds = max(0.0, (delivery.sent_at - since).total_seconds())
            NOTIFICATION_LATENCY.labels(delivery.channel).observe(seconds)


def deliveries_counted(channel: str, outcome: str, count: int) -> None:
    """A group of outcomes recorded in one statement (the fan-out's sent and skipped)."""
    if count:
        DELIVERIES.labels(channel, outcome).inc(count)


def latencies_observed(channel: str, seconds: list[float]) -> None:
    """A group of sent messages' latencies, as observing each one would count them, with one
    increment per bucket reached rather than two per message: in a worker each increment
    takes a lock and writes the multiprocess metrics file (about 1.6 µs an observation).
    prometheus_client has no call for many observations, so this uses its histogram's
    buckets as Histogram.observe does (tests/test_metrics.py checks they add up the same);
    a histogram without them is observed one value at a time."""
    histogram = NOTIFICATION_LATENCY.labels(channel)
    values = [max(0.0, value) for value in seconds]
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None or len(buckets) != len(bounds):
        for value in values:
            histogram.observe(value)
        return
    for index, count in collections.Counter(bisect_left(bounds, v) for v in values).items():
        buckets[index].inc(count)  # the first bucket whose upper bound holds the value
    if values:
        total.inc(math.fsum(values))


def _outcome(delivery: Delivery) -> str:
    if delivery.outcome is not None:
        return delivery.outcome.value
    return {DeliveryStatus.PENDING: "retry"}.get(delivery.status, delivery.status.value)


def _notice_time(session: Session, delivery: Delivery) -> datetime | None:
    """When the article was first seen or the alert started: one query per notice and
    session (a batch), not per delivery (the composer's copy is gone from the session)."""
    key: tuple[str, int | None]
    if delivery.digest_id is not None:
        key = ("digest", delivery.digest_id)
        query = select(Digest.due_at).where(Digest.id == delivery.digest_id)
    elif delivery.alert_id is not None:
        key = ("alert", delivery.alert_id)
        query = select(func.coalesce(Alert.started_at, Alert.created_at)).where(
            Alert.id == delivery.alert_id
        )
    else:
        key = ("article", delivery.article_id)
        query = select(Article.first_seen_at).where(Article.id == delivery.article_id)
    known = session.info.setdefault("notifier_notice_times", {})
    if key not in known:
        try:
            known[key] = session.scalar(query)
        except SQLAlchemyError as error:
            # The outcome is committed already; the batch's next step meets the outage and
            # retries as usual. Timing one message is not worth failing its batch for.
            session.rollback()
            log.warning("delivery %s sent but not timed: %s", delivery.id, error)
            return None
    return known[key]


def task_failed(task_name: str) -> None:
    TASK_FAILURES.labels(task_name.rpartition(".")[2]).inc()


def bounce_report_processed(source: str, kind: str, replay: bool) -> None:
    BOUNCE_REPORTS.labels(source, "replay" if replay else kind).inc()


def bounce_report_unprocessed(source: str, cause: str) -> None:
    BOUNCE_REPORTS_UNPROCESSED.labels(source, cause).inc()


def sweep_requeued(counts: dict[str, int]) -> None:
    for kind, count in counts.items():
        SWEEP_REQUEUED.labels(kind).inc(count)  # zero too: the series exists from the start


@dataclass
class FanoutTiming:
    counts: bool = True


@contextmanager
def fanout_timer(notice: str) -> Iterator[FanoutTiming]:
    """Time one fan-out. Not observed: a run cut short by an outage (and retried), and a
    repeat that found the planning already done (`timing.counts = False`): a task handed
    to the broker twice is still one fan-out."""
    started = time.perf_counter()
    timing = FanoutTiming()
    yield timing
    if timing.counts:
        FANOUT_SECONDS.labels(notice).observe(time.perf_counter() - started)


# Read by /metrics.


class RecordedCollector:
    """The counters and histograms every process wrote under `directory`, summed. Each
    service run writes into its own subdirectory (see `notifier.cli`), so read them all."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def collect(self) -> Iterator[Metric]:
        for _ in range(3):
            files = [str(path) for path in sorted(self.directory.glob("**/*.db"))]
            try:
                merged = list(MultiProcessCollector.merge(files, accumulate=True))
            except FileNotFoundError:  # a stale run was removed between listing and reading
                continue
            yield from merged
            return
        log.warning(
            "metrics: files under %s kept vanishing; recorded metrics left out", self.directory
        )


class StateCollector:
    """Gauges read at scrape time. A part that is down (its connection or query errors) is
    reported as notifier_up{part} 0 and logged, and the scrape still answers; a bug in here
    still raises, rather than passing for an outage."""

    def __init__(
        self, settings: Settings, celery: Celery | None, now: Callable[[], datetime] = utcnow
    ) -> None:
        self.settings, self.celery, self.now = settings, celery, now

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "notifier_up", "1 if the part (database, broker) answered this scrape.", labels=["part"]
        )
        parts: dict[str, tuple[Callable[[], list[Metric]], tuple[type[BaseException], ...]]]
        parts = {"database": (self._database, (SQLAlchemyError,))}
        if (celery := self.celery) is not None:  # a web app with a stand-in queue has no broker
            parts["broker"] = (lambda: self._broker(celery), self._broker_errors(celery))
        for part, (read, outages) in parts.items():
            try:
                families = read()
            except outages as error:
                log.warning("metrics: %s unavailable: %s", part, error)
                families = None
            up.add_metric([part], 0 if families is None else 1)
            yield from families or []
        yield up

    def _broker(self, celery: Celery) -> list[Metric]:
        depth = GaugeMetricFamily(
            "notifier_queue_depth", "Tasks waiting in the broker queue.", labels=["queue"]
        )
        for queue, count in queue_depths(celery).items():
            depth.add_metric([queue], count)
        return [depth]

    @staticmethod
    def _broker_errors(celery: Celery) -> tuple[type[BaseException], ...]:
        """kombu's own, plus the transport's (redis, or SQLAlchemy for the SQLite broker)."""
        with celery.connection_for_read() as connection:  # does not connect
            transport = (*connection.connection_errors, *connection.channel_errors)
        return (BrokerError, ChannelError, OSError, SQLAlchemyError, *transport)

    def _database(self) -> list[Metric]:
        with session_scope(self.settings.database_url) as session:
            now = self.now()
            return [
                *_feed_families(session, now, self.settings.feed_stale_seconds),
                *_worker_families(session, now, self.settings.worker_stale_seconds),
                *_ops_history_families(session, now, self.settings),
                *_retention_families(session, now),
                _by_status(
                    session, Subscriber.status, SubscriberStatus, "notifier_subscribers",
                    "Email subscribers by state.",
                ),
                _by_status(
                    session, PushSubscription.status, PushStatus, "notifier_push_subscriptions",
                    "Browser push subscriptions by state.",
                ),
            ]  # fmt: skip


def _feed_families(session: Session, now: datetime, stale_seconds: int) -> list[Metric]:
    age = GaugeMetricFamily(
        "notifier_feed_last_success_age_seconds",
        "Seconds since the feed was last read successfully (+Inf: never).",
        labels=["feed"],
    )
    error = GaugeMetricFamily(
        "notifier_feed_error", "1 if the feed's last poll failed.", labels=["feed"]
    )
    for feed in feed_health(session, now, stale_seconds):
        last = feed.last_success_at
        age.add_metric([feed.url], (now - last).total_seconds() if last else math.inf)
        error.add_metric([feed.url], 1 if feed.last_error else 0)
    return [age, error]


def _worker_families(session: Session, now: datetime, stale_seconds: int) -> list[Metric]:
    age = GaugeMetricFamily(
        "notifier_worker_last_heartbeat_age_seconds",
        "Seconds since the worker's last heartbeat (workers seen in the last day).",
        labels=["worker"],
    )
    states = worker_states(session, now, stale_seconds)
    for state in states:
        age.add_metric([state.hostname], (now - state.seen_at).total_seconds())
    online = GaugeMetricFamily(
        "notifier_workers_online",
        "Workers whose last heartbeat is fresher than WORKER_STALE_SECONDS.",
        value=sum(state.online for state in states),
    )
    return [age, online]


def _ops_history_families(session: Session, now: datetime, settings: Settings) -> list[Metric]:
    window = settings.task_failure_window_seconds
    failures = GaugeMetricFamily(
        "notifier_task_failures_recent",
        f"Tasks that failed for good in the last TASK_FAILURE_WINDOW_SECONDS ({window}s), by "
        "task; `notifier status` is unhealthy from TASK_FAILURE_LIMIT on.",
        labels=["task"],
    )
    since = now - timedelta(seconds=window)
    for task, count in sorted(task_failures_by_task(session, since).items()):
        failures.add_metric([task], count)
    requeued = GaugeMetricFamily(
        "notifier_sweep_requeued_last_day",
        "Work the sweeper re-queued in the last day, by kind (zero in normal operation).",
        labels=["kind"],
    )
    for kind, count in sweep_summary(session, now).last_day.items():
        requeued.add_metric([kind], count)
    recovered = GaugeMetricFamily(
        "notifier_deliveries_recovered_last_day",
        "Deliveries queued again after a fault in the last day, by cause: dead_worker, "
        "broker_lost, sweeper (zero in normal operation).",
        labels=["cause"],
    )
    for cause, count in recovery_summary(session, now).last_day.items():
        recovered.add_metric([cause], count)
    return [
        failures, requeued, recovered, *_unsent_families(session, now),
        *_email_rate_families(session, now, settings), _skip_family(session, now),
        _held_family(session, now),
    ]  # fmt: skip


def _held_family(session: Session, now: datetime) -> Metric:
    held = GaugeMetricFamily(
        "notifier_push_held_for_quiet_hours",
        "Pushes waiting for their browsers' quiet hours to end (due again then).",
    )
    held.add_metric([], held_for_quiet_hours(session, now).count)
    return held


def _skip_family(session: Session, now: datetime) -> Metric:
    from notifier.delivery.routes import CHANNELS  # the send path imports this module

    skipped = GaugeMetricFamily(
        "notifier_deliveries_skipped_last_day",
        "Deliveries planned in the last 24 hours that were skipped on purpose, by channel and "
        "reason: stale (the article was older than STALE_NEWS_HOURS when it could go) or other "
        "(the reader left or paused, the alert was stopped, ...; /ops/ shows each reason).",
        labels=["channel", "reason"],
    )
    counts = named_skip_counts(session, now - timedelta(days=1), CHANNELS)
    for (channel, reason), count in sorted(counts.items()):
        skipped.add_metric([channel, reason], count)
    return skipped


def _retention_families(session: Session, now: datetime) -> list[Metric]:
    """The retention job, read from its recorded runs (any host's beat may have run it)."""
    summary = retention_summary(session, now)
    last = summary.last
    values = (
        ("notifier_retention_last_run_timestamp_seconds",
         "When the last retention run started (Unix time; 0: never ran).",
         last.started_at.timestamp() if last else 0.0),
        ("notifier_retention_last_run_duration_seconds",
         "How long the last finished retention run took (0: none finished).",
         summary.last_seconds or 0.0),
        ("notifier_retention_last_run_removed",
         "Deliveries the last retention run removed (counted into delivery_summaries first).",
         last.removed if last else 0),
        ("notifier_retention_last_run_failed",
         "1 if the last retention run failed (its cause is on /ops/ and in `notifier status`).",
         1 if summary.failed else 0),
        ("notifier_retention_removed_last_day",
         "Deliveries removed by retention runs started in the last 24 hours.",
         summary.removed_last_day),
        ("notifier_delivery_summary_rows",
         "Rows of delivery_summaries: the counts of every delivery retention removed.",
         summary.summary_rows),
    )  # fmt: skip
    return [GaugeMetricFamily(name, text, value=value) for name, text, value in values]


def _email_rate_families(session: Session, now: datetime, settings: Settings) -> list[Metric]:
    day = rates_since(session, now - timedelta(days=1))
    families = [
        GaugeMetricFamily(
            f"notifier_email_{name}_last_day", f"Email {what} in the last 24 hours.", value=value
        )
        for name, what, value in (
            ("sent", "sent (taken by the server, or refused at once as gone)", day.sent),
            ("bounced", "sent that bounced (returned, or refused at once)", day.bounced),
            ("complained", "sent that the reader reported as spam", day.complained),
        )
    ]
    for name, value in (("bounce", day.bounce_percent), ("complaint", day.complaint_percent)):
        families.append(GaugeMetricFamily(
            f"notifier_email_{name}_rate_last_day",
            f"Email {name}s per email sent in the last 24 hours, as a fraction (0 when none "
            "was sent).",
            value=(value or 0.0) / 100,
        ))  # fmt: skip
    warning = GaugeMetricFamily(
        "notifier_email_rate_warning",
        "1 if a day of the last DELIVERABILITY_DAYS is over COMPLAINT_RATE_WARNING_PERCENT "
        "(rate=complaints) or BOUNCE_RATE_WARNING_PERCENT (rate=bounces), on at least "
        "DELIVERABILITY_MIN_SENT emails: what makes `notifier status` unhealthy.",
        labels=["rate"],
    )
    days = daily_rates(session, now, settings.deliverability_days,
                       ZoneInfo(settings.site_timezone), Thresholds.of(settings))  # fmt: skip
    flagged = {w for d in days for w in d.warnings}
    for rate in ("complaints", "bounces"):
        warning.add_metric([rate], 1 if rate in flagged else 0)
    return [*families, warning]


def _unsent_families(session: Session, now: datetime) -> list[Metric]:
    summary = unsent_summary(session, now)
    waiting = GaugeMetricFamily(
        "notifier_unsent_tasks_waiting",
        "Tasks the broker did not take that no worker has handed over yet (zero when it "
        "answers: the workers hand them over within BROKER_CHECK_SECONDS).",
        value=summary.waiting,
    )
    kept = GaugeMetricFamily(
        "notifier_unsent_tasks_last_day",
        "Tasks the broker did not take when sent in the last day, by task (zero in normal "
        "operation).",
        labels=["task"],
    )
    for task in UNSENT_TASKS:
        kept.add_metric([task], summary.kept_last_day.get(task, 0))
    for task, count in sorted(summary.kept_last_day.items()):
        if task not in UNSENT_TASKS:
            kept.add_metric([task], count)
    return [waiting, kept]


def _by_status(
    session: Session,
    column: InstrumentedAttribute,
    states: type[enum.StrEnum],
    name: str,
    documentation: str,
) -> Metric:
    counts = dict.fromkeys(states, 0)  # every state has a series, zero or not
    counts.update(session.execute(select(column, func.count()).group_by(column)).all())
    family = GaugeMetricFamily(name, documentation, labels=["status"])
    for state, count in counts.items():
        family.add_metric([state.value], count)
    return family
