"""One picture of the deployment for `notifier status` and the dashboard: workers, queues,
feeds, recent failures, and the problems among them, each said in a sentence."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from celery import Celery
from kombu.exceptions import KombuError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from notifier.config import Settings
from notifier.delivery.unsent import UnsentSummary, unsent_summary
from notifier.logs import redact
from notifier.ops.deliverability import EmailRates, email_rates
from notifier.ops.deliverability_report import email_rate_lines, email_rates_json
from notifier.ops.failures import FailureGroup, deliveries_by_outcome, recent_failures
from notifier.ops.feeds import FeedHealth, feed_health
from notifier.ops.queues import queue_depths
from notifier.ops.recoveries import RecoverySummary, recovery_summary
from notifier.ops.retention_runs import RetentionSummary, retention_summary
from notifier.ops.sweeps import SweepSummary, sweep_summary
from notifier.ops.task_failures import TaskFailureGroup, recent_task_failures
from notifier.ops.workers import WorkerState, worker_states
from notifier.wording import plural


def age(now: datetime, then: datetime | None) -> str:
    """How long ago, rounded for people: '42s', '12m', '3h', '2d'; 'never' for None."""
    if then is None:
        return "never"
    seconds = max(0, int((now - then).total_seconds()))
    for unit, size, below in (("s", 1, 120), ("m", 60, 7200), ("h", 3600, 172800)):
        if seconds < below:
            return f"{seconds // size}{unit}"
    return f"{seconds // 86400}d"


def _short(error: BaseException) -> str:
    orig = getattr(error, "orig", None) or error
    return redact((str(orig).strip().splitlines() or [type(orig).__name__])[0])[:200]


@dataclass
class StatusReport:
    now: datetime
    workers: list[WorkerState] = field(default_factory=list)
    queues: dict[str, int] | None = None  # None: the broker could not be asked
    feeds: list[FeedHealth] = field(default_factory=list)
    failures_last_hour: list[FailureGroup] = field(default_factory=list)
    failures_last_day: list[FailureGroup] = field(default_factory=list)
    outcomes_last_day: dict[tuple[str, str], int] = field(default_factory=dict)
    task_failures_window: list[TaskFailureGroup] = field(default_factory=list)
    task_failures_last_day: list[TaskFailureGroup] = field(default_factory=list)
    sweep: SweepSummary | None = None
    recovered: RecoverySummary | None = None
    unsent: UnsentSummary | None = None
    retention: RetentionSummary | None = None
    email: EmailRates | None = None  # bounce and complaint rates
    database_error: str | None = None
    broker_error: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.problems

    def as_json(self) -> dict:
        outcomes: dict[str, dict[str, int]] = {}
        for (channel, outcome), count in sorted(self.outcomes_last_day.items()):
            outcomes.setdefault(channel, {})[outcome] = count
        return {
            "healthy": self.healthy,
            "problems": self.problems,
            "checked_at": self.now.isoformat(),
            "database": {"ok": self.database_error is None, "error": self.database_error},
            "broker": {"ok": self.broker_error is None, "error": self.broker_error},
            "workers": [_worker_json(w, self.now) for w in self.workers],
            "queues": self.queues,
            "feeds": [_feed_json(f, self.now) for f in self.feeds],
            "failures": {
                "last_hour": [_failure_json(g) for g in self.failures_last_hour],
                "last_day": [_failure_json(g) for g in self.failures_last_day],
            },
            "deliveries_last_day": outcomes,
            "task_failures": {
                "window": [_task_failure_json(g) for g in self.task_failures_window],
                "last_day": [_task_failure_json(g) for g in self.task_failures_last_day],
            },
            "sweeper": _sweep_json(self.sweep),
            "recovered": _recovered_json(self.recovered),
            "unsent_tasks": _unsent_json(self.unsent),
            "retention": _retention_json(self.retention),
            "email_rates": email_rates_json(self.email),
        }


def _seconds_since(now: datetime, then: datetime | None) -> float | None:
    return None if then is None else round((now - then).total_seconds(), 1)


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.isoformat()


def _worker_json(w: WorkerState, now: datetime) -> dict:
    return {
        "hostname": w.hostname,
        "online": w.online,
        "last_heartbeat": _iso(w.seen_at),
        "heartbeat_age_seconds": _seconds_since(now, w.seen_at),
        "started_at": _iso(w.started_at),
        "concurrency": w.concurrency,
        "active_tasks": w.active_tasks,
        "pid": w.pid,
    }


def _feed_json(f: FeedHealth, now: datetime) -> dict:
    return {
        "url": f.url,
        "healthy": f.healthy,
        "last_success": _iso(f.last_success_at),
        "last_success_age_seconds": _seconds_since(now, f.last_success_at),
        "last_polled": _iso(f.last_polled_at),
        "last_new_article": _iso(f.last_new_article_at),
        "last_error": f.last_error,
    }


def _failure_json(g: FailureGroup) -> dict:
    return {"channel": g.channel, "cause": g.cause, "count": g.count, "last_at": _iso(g.last_at)}


def _task_failure_json(g: TaskFailureGroup) -> dict:
    return {"task": g.task, "cause": g.cause, "count": g.count, "last_at": _iso(g.last_at)}


def _sweep_json(sweep: SweepSummary | None) -> dict | None:
    if sweep is None:
        return None
    return {
        "last_sweep": _iso(sweep.last_at),
        "last_requeued": sweep.last,
        "requeued_last_day": sweep.last_day,
        "sweeps_last_day": sweep.sweeps_last_day,
    }


def _recovered_json(recovered: RecoverySummary | None) -> dict | None:
    if recovered is None:
        return None
    return {"deliveries_last_day": recovered.last_day, "last": _iso(recovered.last_at)}


def _unsent_json(unsent: UnsentSummary | None) -> dict | None:
    if unsent is None:
        return None
    return {
        "waiting": unsent.waiting,
        "waiting_deliveries": unsent.waiting_deliveries,
        "waiting_since": _iso(unsent.waiting_since),
        "kept_last_day": unsent.kept_last_day,
        "last_cause": unsent.last_cause,
    }


def _retention_json(retention: RetentionSummary | None) -> dict | None:
    if retention is None:
        return None
    last = retention.last
    return {
        "last_run": _iso(last.started_at) if last else None,
        "last_finished": _iso(last.finished_at) if last else None,
        "last_removed": last.removed if last else None,
        "last_seconds": retention.last_seconds,
        "last_complete": last.complete if last else None,
        "last_error": last.error if last else None,
        "removed_last_day": retention.removed_last_day,
        "summary_rows": retention.summary_rows,
    }


def _read_database(report: StatusReport, session: Session, settings: Settings) -> None:
    now = report.now
    try:
        report.workers = worker_states(session, now, settings.worker_stale_seconds)
        report.feeds = feed_health(session, now, settings.feed_stale_seconds)
        report.failures_last_hour = recent_failures(session, now, hours=1)
        report.failures_last_day = recent_failures(session, now, hours=24)
        report.outcomes_last_day = deliveries_by_outcome(session, now - timedelta(days=1))
        window = settings.task_failure_window_seconds
        report.task_failures_window = recent_task_failures(session, now, window)
        report.task_failures_last_day = recent_task_failures(session, now, 86400)
        report.sweep = sweep_summary(session, now)
        report.recovered = recovery_summary(session, now)
        report.unsent = unsent_summary(session, now)
        report.retention = retention_summary(session, now)
        report.email = email_rates(session, now, settings)
    except SQLAlchemyError as error:
        session.rollback()
        report.database_error = _short(error)


def _read_broker(report: StatusReport, celery_app: Celery) -> None:
    connection = celery_app.connection_for_read()
    errors: tuple[type[BaseException], ...] = (
        KombuError,
        OSError,
        *connection.connection_errors,
        *connection.channel_errors,
    )
    try:
        report.queues = queue_depths(celery_app)
    except errors as error:
        report.broker_error = _short(error)


def problems_of(report: StatusReport, settings: Settings) -> list[str]:
    """Sentences for everything that makes the deployment unhealthy."""
    problems = []
    if report.database_error:
        problems.append(f"The database is unreachable: {report.database_error}.")
    if report.broker_error:
        problems.append(f"The broker is unreachable: {report.broker_error}.")
    if report.database_error is None:
        if not any(w.online for w in report.workers):
            problems.append(
                "No worker is online (no heartbeat in the last "
                f"{settings.worker_stale_seconds}s): nothing is being sent."
            )
        for w in report.workers:
            if not w.online:
                problems.append(
                    f"Worker {w.hostname} is offline: last heartbeat "
                    f"{age(report.now, w.seen_at)} ago."
                )
    for f in report.feeds:
        if not f.healthy:
            if f.last_error:
                why = f"last poll failed: {f.last_error[:200]}"
            elif f.last_success_at is None:
                why = "never read successfully"
            else:
                why = f"last read successfully {age(report.now, f.last_success_at)} ago"
            problems.append(f"Feed {f.url} is unhealthy: {why}.")
    if report.unsent is not None and report.unsent.waiting:
        problems.append(unsent_problem(report.unsent, report.now))
    if report.email is not None:
        problems.extend(report.email.warnings)
    if report.retention is not None and report.retention.failed:
        problems.append(report.retention.line())
    failed = sum(g.count for g in report.task_failures_window)
    if failed >= settings.task_failure_limit:
        worst = report.task_failures_window[0]
        problems.append(
            f"{failed} tasks failed in the last {age_of(settings.task_failure_window_seconds)} "
            f"(TASK_FAILURE_LIMIT is {settings.task_failure_limit}); most often "
            f"{worst.task}: {worst.cause}."
        )
    return problems


def unsent_problem(unsent: UnsentSummary, now: datetime) -> str:
    """Work the broker has not taken yet: news held back until it answers."""
    return (
        f"{plural(unsent.waiting, 'task')} the broker did not take "
        f"({plural(unsent.waiting_deliveries, 'delivery', 'deliveries')} among them) "
        f"{'has' if unsent.waiting == 1 else 'have'} waited {age(now, unsent.waiting_since)}: "
        "a worker hands them over as soon as it answers. Last cause: "
        f"{(unsent.last_cause or 'unknown').rstrip('.')}."
    )


def age_of(seconds: int) -> str:
    """'1h', '15m', '90s': a duration as people say it."""
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    return f"{seconds // 60}m" if seconds % 60 == 0 else f"{seconds}s"


def gather_status(
    session: Session, celery_app: Celery, settings: Settings, now: datetime
) -> StatusReport:
    """Read everything; an unreachable database or broker becomes a problem, not an error."""
    report = StatusReport(now=now)
    _read_database(report, session, settings)
    _read_broker(report, celery_app)
    report.problems = problems_of(report, settings)
    return report


def this_host_worker(workers: list[WorkerState], host: str) -> WorkerState | None:
    """The online worker running on this machine ('celery@<host>'), if any."""
    for worker in workers:
        if worker.online and worker.hostname.rpartition("@")[2] == host:
            return worker
    return None


def render_text(report: StatusReport) -> str:
    """The report for a terminal, problems last so they are what stays on screen."""
    now, lines = report.now, ["Workers"]
    if report.database_error:
        lines.append("  unknown: the database is unreachable")
    for w in report.workers:
        lines.append(
            f"  {'online ' if w.online else 'OFFLINE'}  {w.hostname}  heartbeat "
            f"{age(now, w.seen_at)} ago  concurrency {w.concurrency}  active {w.active_tasks}"
        )
    if not report.workers and not report.database_error:
        lines.append("  none seen in the last day")
    lines.append("Queues")
    if report.queues is None:
        lines.append("  unknown: the broker is unreachable")
    for name, depth in (report.queues or {}).items():
        lines.append(f"  {name}  {depth} waiting")
    lines.append("Feeds")
    for f in report.feeds:
        state = "ok       " if f.healthy else "UNHEALTHY"
        error = f"  last error: {f.last_error}" if f.last_error else ""
        success = f"{age(now, f.last_success_at)} ago" if f.last_success_at else "never"
        lines.append(f"  {state}  {f.url}  last success {success}{error}")
    if not report.feeds and not report.database_error:
        lines.append("  none")
    lines.append("Failed deliveries (last hour / last day)")
    hour = {(g.channel, g.cause): g.count for g in report.failures_last_hour}
    for g in report.failures_last_day:
        lines.append(f"  {g.channel}  {hour.get((g.channel, g.cause), 0)} / {g.count}  {g.cause}")
    if not report.failures_last_day:
        lines.append("  none")
    lines.append("Failed tasks (last day)")
    for t in report.task_failures_last_day:
        lines.append(f"  {t.task}  {t.count}  {t.cause}")
    if not report.task_failures_last_day:
        lines.append("  none")
    if report.sweep is not None:
        day = report.sweep.last_day
        lines.append(
            f"Sweeper  re-queued in the last day: {day['deliveries']} deliveries, "
            f"{day['articles']} articles, {day['alerts']} alerts "
            f"({report.sweep.sweeps_last_day} sweeps; zero in normal operation)"
        )
    if report.recovered is not None:
        lines.append(recovered_line(report.recovered))
    if report.unsent is not None:
        lines.append(unsent_line(report.unsent))
    if report.retention is not None:
        lines.append(report.retention.line())
    if report.email is not None:
        lines.extend(email_rate_lines(report.email))
    if report.healthy:
        lines.append("Healthy.")
    else:
        lines.append(f"Not healthy ({len(report.problems)}):")
        lines.extend(f"  - {problem}" for problem in report.problems)
    return "\n".join(lines)


def recovered_line(recovered: RecoverySummary) -> str:
    """Deliveries queued again after a fault in the last day, by cause, in one line."""
    day = recovered.last_day
    return (
        "Recovered after faults (last day): "
        f"{plural(day['dead_worker'], 'delivery', 'deliveries')} taken over from dead workers, "
        f"{day['broker_lost']:,} queued again after the broker lost its queues, "
        f"{day['broker_unreachable']:,} handed over once the unreachable broker answered, "
        f"{day['sweeper']:,} re-queued by the sweeper (zero in normal operation)"
    )


def unsent_line(unsent: UnsentSummary) -> str:
    """Tasks the broker did not take in the last day, and how many still wait, in one line."""
    kinds = ", ".join(f"{task} {count}" for task, count in sorted(unsent.kept_last_day.items()))
    return (
        f"Not taken by the broker (last day): {plural(unsent.kept, 'task')}"
        f"{f' ({kinds})' if kinds else ''}, {unsent.waiting:,} waiting for it now "
        "(zero in normal operation)"
    )
