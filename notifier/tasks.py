"""Thin Celery tasks: ids in, domain + channel, outcome mapped to a retry. Safe to run twice.

The database is the source of truth for what is owed; a task only carries ids. A task that
meets a database or broker outage is retried with backoff; whatever the broker loses, the
sweeper finds again in the database.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import cache

from celery import shared_task
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy.exc import InterfaceError, OperationalError

from notifier import holders, metrics
from notifier.channels.base import Outcome
from notifier.channels.registry import outlets
from notifier.compose import Composer
from notifier.config import Settings
from notifier.db import session_scope
from notifier.dispatch import retry_policy
from notifier.dispatch import send_deliveries as send_batch
from notifier.domain.alerts import (
    alert_channels,
    alert_notice,
    finish_if_done,
    finish_planning,
    release_due_alerts,
    start_alert,
    unplanned_alert_ids,
)
from notifier.domain.deliveries import (
    AUDIENCES,
    Notice,
    alert_ids_of,
    due_groups,
    note_queued,
    overdue_delivery_ids,
    plan_chunks,
    unplanned_article_ids,
)
from notifier.domain.feeds import sync_feeds
from notifier.feed_poller import FeedFetchError, fetch, finish_poll, start_poll
from notifier.logs import redact
from notifier.models import Alert, Article
from notifier.ops.recoveries import forget_recoveries
from notifier.ops.sweeps import forget_sweeps, record_sweep
from notifier.ops.task_failures import forget_task_failures
from notifier.timeutil import utcnow

log = logging.getLogger(__name__)
OUTAGES = (OperationalError, InterfaceError, BrokerError)


def _settings(task) -> Settings:
    return task.app.notifier_settings


@cache
def _composer(settings: Settings) -> Composer:
    return Composer(settings)


@cache
def _outlets(settings: Settings) -> dict:
    return outlets(settings, _composer(settings))


def retried_through_outages(task_function):
    """Database or broker briefly away: retry the whole task later (it is idempotent)."""

    @functools.wraps(task_function)
    def run(self, *args, **kwargs):
        try:
            return task_function(self, *args, **kwargs)
        except OUTAGES as error:
            settings = _settings(self)
            delay = retry_policy(settings).delay(self.request.retries + 1)
            log.warning("%s: outage (%s), retrying in %.0fs", self.name, error, delay)
            retry = self.retry(exc=error, countdown=delay, max_retries=settings.task_max_retries)
            raise retry from error

    return run


def send_rates(settings: Settings) -> dict[str, float]:
    """Sends per second of each paced channel (all workers together)."""
    rates = {"email": settings.email_rate_per_second, "push": settings.push_rate_per_second}
    return {channel: rate for channel, rate in rates.items() if rate > 0}


def queue_deliveries(
    session, delivery_ids: Sequence[int], countdown: float = 0.0, turn_in: float = 0.0
) -> None:
    """Hand a chunk to the broker and note it, so the sweeper knows it is not lost: due to
    run after `countdown`, or (a paced channel's later chunk) to start in `turn_in` s."""
    note_queued(session, delivery_ids, utcnow() + timedelta(seconds=max(countdown, turn_in)))
    session.commit()
    send_deliveries.apply_async((list(delivery_ids),), countdown=countdown or None)


def queue_when_due(session, due_at: dict[int, datetime], settings: Settings) -> None:
    """Queue each row for the moment it is due (rows due together share a task). A wait
    longer than BROKER_ETA_MAX_SECONDS is covered in hops: a task that comes early queues its
    rows again for their time, so no broker holds an ETA task for hours."""
    now = utcnow()
    for due, ids in due_groups(due_at, settings.retry_group_seconds):
        wait = min(max(0.0, (due - now).total_seconds()), settings.broker_eta_max_seconds)
        for start in range(0, len(ids), settings.delivery_chunk_size):
            queue_deliveries(session, ids[start : start + settings.delivery_chunk_size], wait)


def queue_in_chunks(
    session, delivery_ids: Sequence[int], settings: Settings, rate: float = 0.0
) -> None:
    """Queue rows due now a chunk at a time; on a paced channel (`rate` per second) each
    chunk is noted queued for when its turn comes."""
    size = settings.delivery_chunk_size
    for start in range(0, len(delivery_ids), size):
        turn_in = start / rate if rate > 0 else 0.0
        queue_deliveries(session, delivery_ids[start : start + size], turn_in=turn_in)


@shared_task(bind=True, name="notifier.tasks.poll_feeds")
@retried_through_outages
def poll_feeds(self) -> int:
    settings = _settings(self)
    with session_scope(settings.database_url) as session:
        feed_ids = [feed.id for feed in sync_feeds(session, settings.feed_urls, utcnow())]
        session.commit()
    for feed_id in feed_ids:
        poll_feed.delay(feed_id)
    return len(feed_ids)


@shared_task(bind=True, name="notifier.tasks.poll_feed")
@retried_through_outages
def poll_feed(self, feed_id: int) -> list[int]:
    """On the feeds queue (its own worker pool): a slow feed never holds a sending slot."""
    settings = _settings(self)
    with session_scope(settings.database_url) as session:
        request = start_poll(session, feed_id, utcnow())
        session.commit()
    if request is None:
        return []
    try:
        outcome = fetch(request, settings)  # no transaction open meanwhile
    except FeedFetchError as error:
        outcome = error
    with session_scope(settings.database_url) as session:
        new_ids = finish_poll(session, feed_id, outcome, utcnow(),
                              settings.category_grace_seconds)  # fmt: skip
        session.commit()
    for article_id in new_ids:
        fan_out_article.delay(article_id)
    return new_ids


def _plan_and_queue(session, notice: Notice, channels, settings: Settings) -> dict[str, int]:
    """Plan a chunk, commit, queue it, next chunk: the first messages go out while the rest
    of the audience is still being planned, and memory holds one chunk, not the audience."""
    channels = sorted(channels, key=lambda channel: channel != "push")  # the fastest first
    planned = dict.fromkeys(channels, 0)
    chunks = plan_chunks(session, notice, channels, utcnow(), settings.delivery_chunk_size,
                         queued_at=utcnow, rates=send_rates(settings))  # fmt: skip
    for chunk in chunks:
        session.commit()
        planned[chunk.channel] += chunk.planned
        if chunk.delivery_ids:
            send_deliveries.apply_async((chunk.delivery_ids,))
    return planned


@shared_task(bind=True, name="notifier.tasks.fan_out_article")
@retried_through_outages
def fan_out_article(self, article_id: int) -> dict[str, int]:
    settings = _settings(self)
    with metrics.fanout_timer("article"), session_scope(settings.database_url) as session:
        if session.get(Article, article_id) is None:
            return {}
        planned = _plan_and_queue(session, Notice.article(article_id), list(AUDIENCES), settings)
        article = session.get(Article, article_id)
        if article is not None and article.fanned_out_at is None:
            article.fanned_out_at = utcnow()
        session.commit()
    log.info("article %s: %s deliveries planned and queued", article_id, planned,
             extra={"article_id": article_id})  # fmt: skip
    return planned


@shared_task(bind=True, name="notifier.tasks.fan_out_alert")
@retried_through_outages
def fan_out_alert(self, alert_id: int) -> dict[str, int]:
    settings = _settings(self)
    with metrics.fanout_timer("alert"), session_scope(settings.database_url) as session:
        alert = start_alert(session, alert_id, utcnow())
        if alert is None:
            return {}
        session.commit()
        channels = alert_channels(alert)
        planned = _plan_and_queue(session, alert_notice(alert), channels, settings)
        alert = session.get(Alert, alert_id)
        if alert is not None:
            finish_planning(session, alert, utcnow())
        session.commit()
    log.info("alert %s: %s deliveries planned", alert_id, planned, extra={"alert_id": alert_id})
    return planned


@shared_task(bind=True, name="notifier.tasks.release_alerts")
@retried_through_outages
def release_alerts(self) -> list[int]:
    """Beat: scheduled alerts whose time came, and accepted alerts whose task was lost."""
    settings = _settings(self)
    with session_scope(settings.database_url) as session:
        alert_ids = release_due_alerts(session, utcnow(), settings.alert_scheduler_seconds * 2)
        session.commit()
    for alert_id in alert_ids:
        fan_out_alert.delay(alert_id)
    return alert_ids


@shared_task(bind=True, name="notifier.tasks.send_alert_test")
def send_alert_test(self, alert_fields: dict, to: str, category_names: list[str]) -> bool:
    """'Send a test to me': the alert email to the editor's own address, recorded nowhere."""
    settings = _settings(self)
    preview = _composer(settings).alert_preview(Alert(**alert_fields), to, category_names)
    return _send_service_email(self, settings, preview, subscriber_id=0)


@shared_task(bind=True, name="notifier.tasks.send_deliveries")
@retried_through_outages
def send_deliveries(self, delivery_ids: list[int]) -> dict:
    settings = _settings(self)
    with session_scope(settings.database_url) as session:
        report = send_batch(session, delivery_ids, _outlets(settings), settings,
                            holder=holders.current())  # fmt: skip
        queue_when_due(session, report.due_at, settings)
        for alert_id in alert_ids_of(session, delivery_ids):
            finish_if_done(session, alert_id, utcnow())
        session.commit()
    return {"sent": report.sent, "skipped": report.skipped, "failed": report.failed,
            "retrying": len(report.retry_in)}  # fmt: skip


@shared_task(bind=True, name="notifier.tasks.send_confirmation", max_retries=None)
def send_confirmation(self, subscriber_id: int, category_ids: list[int]) -> bool:
    settings = _settings(self)
    with session_scope(settings.database_url) as session:
        message = _composer(settings).confirmation_email(session, subscriber_id, category_ids)
    return _send_service_email(self, settings, message, subscriber_id)


@shared_task(bind=True, name="notifier.tasks.send_manage_link", max_retries=None)
def send_manage_link(self, subscriber_id: int) -> bool:
    settings = _settings(self)
    with session_scope(settings.database_url) as session:
        message = _composer(settings).manage_link_email(session, subscriber_id)
    return _send_service_email(self, settings, message, subscriber_id)


class ServiceEmailNotSent(Exception):
    """A confirmation or manage-link email the server refused for good, or kept refusing."""


def _send_service_email(task, settings: Settings, message, subscriber_id: int) -> bool:
    """Transactional mail the reader asked for: retried on temporary failure; refused for
    good (or still refused after the attempts), the task fails and that is recorded."""
    if message is None:
        return False
    connection = _outlets(settings)["email"].channel.open()  # its kept connections too
    try:
        result = connection.send(message.to_mime(settings.mail_from))
    finally:
        connection.close()
    if result.outcome is Outcome.SENT:
        return True
    attempts = task.request.retries + 1
    if result.outcome is Outcome.RETRY and attempts < settings.delivery_max_attempts:
        delay = retry_policy(settings).delay(attempts)
        raise task.retry(exc=OSError(result.detail), countdown=delay)
    # The task fails: recorded with this cause (celery_app), shown on /ops/ and in status.
    log.warning("%s to subscriber %s not sent: %s", task.name, subscriber_id,
                redact(result.detail), extra={"subscriber_id": subscriber_id or None})  # fmt: skip
    raise ServiceEmailNotSent(f"{result.outcome.value}: {result.detail}")


@shared_task(bind=True, name="notifier.tasks.sweep")
@retried_through_outages
def sweep(self) -> dict:
    """Re-queue work the broker lost: unplanned articles and overdue or abandoned deliveries."""
    settings = _settings(self)
    with session_scope(settings.database_url) as session:
        now = utcnow()
        articles = unplanned_article_ids(session, now, settings.sweep_seconds)
        alerts = unplanned_alert_ids(session, now, settings.sweep_seconds)
        overdue = overdue_delivery_ids(
            session, now, settings.sweep_seconds, settings.sweep_requeue_after_seconds,
            settings.sweep_batch_limit,
        )  # fmt: skip
        for start in range(0, len(overdue), settings.delivery_chunk_size):
            queue_deliveries(session, overdue[start : start + settings.delivery_chunk_size])
        record_sweep(session, now, len(articles), len(alerts), len(overdue))
        keep_after = now - timedelta(days=settings.ops_history_days)
        forget_sweeps(session, keep_after)
        forget_recoveries(session, keep_after)
        forget_task_failures(session, keep_after)
        session.commit()
    for article_id in articles:
        fan_out_article.delay(article_id)
    for alert_id in alerts:
        fan_out_alert.delay(alert_id)
    counts = {"articles": len(articles), "alerts": len(alerts), "deliveries": len(overdue)}
    metrics.sweep_requeued(counts)
    if articles or alerts or overdue:
        log.warning("sweep re-queued %s articles, %s alerts, %s deliveries", len(articles),
                    len(alerts), len(overdue))  # fmt: skip
    return counts
