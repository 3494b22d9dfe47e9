"""Thin Celery tasks: ids in, one call into notifier.delivery (or the domain), an outage
mapped to a retry. Safe to run twice.

The database is the source of truth for what is owed; a task only carries ids. A task that
meets a database or broker outage is retried with backoff. A task the broker does not take
when sent is kept in the database (notifier.delivery.unsent) and handed over by the workers
as soon as the broker answers; whatever the broker loses, the sweeper finds again.
"""

from __future__ import annotations

import functools
import logging
from datetime import timedelta
from functools import cache

from celery import shared_task
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy import text
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError

from notifier import holders, metrics
from notifier.channels.webpush import warm_up as webpush_warm_up
from notifier.config import Settings
from notifier.db import session_factory, session_scope
from notifier.delivery import dispatch, fanout
from notifier.delivery.compose import Composer
from notifier.delivery.digest_planning import plan_and_queue_digests
from notifier.delivery.outlets import outlets
from notifier.delivery.queueing import queue_in_chunks
from notifier.delivery.recording import retry_policy
from notifier.delivery.unsent import NotHandedOver, forget_unsent, keep_unsent
from notifier.domain.alerts import release_due_alerts, unplanned_alert_ids
from notifier.domain.bounces import drop_old_raw_reports
from notifier.domain.deliveries import overdue_delivery_ids, unplanned_article_ids
from notifier.domain.feeds import sync_feeds
from notifier.garbage import settle_after_warm_up
from notifier.inbound.imap_reader import read_bounce_mailbox
from notifier.logs import redact
from notifier.messages import Outcome
from notifier.models import Alert
from notifier.ops.recoveries import forget_recoveries
from notifier.ops.retention_runs import forget_retention_runs
from notifier.ops.sweeps import forget_sweeps, record_sweep
from notifier.ops.task_failures import describe, forget_task_failures
from notifier.polling.fetch import FeedFetchError, FetchedFeed, fetch, finish_poll, start_poll
from notifier.retention import run_retention
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


def warm_up(settings: Settings) -> None:
    """In a new pool process, before its first task: what the first message of the first
    article would otherwise wait for (a database connection, the channels and their
    templates compiled, web push's event loop and TLS context), about 0.1-0.2 s. Only an
    optimisation: a failure is logged and left to the first task, which records it."""
    try:
        with session_scope(settings.database_url) as session:
            session.execute(text("SELECT 1"))
        push = _outlets(settings)["push"].channel
        _composer(settings).renderer.compile_all()
        webpush_warm_up(push)
    except Exception as error:
        log.warning("warming up this worker process failed (%s: %s); its first task will "
                    "do it", type(error).__name__, redact(str(error)))  # fmt: skip
    settle_after_warm_up()


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


def enqueue_send(delivery_ids: list[int], countdown: float = 0.0) -> None:
    """How the delivery path hands a chunk to the broker (see notifier.delivery.queueing),
    which keeps the chunk when the broker does not take it."""
    try:
        send_deliveries.apply_async((list(delivery_ids),), countdown=countdown)  # 0: at once
    except BrokerError as error:
        log.warning("the broker did not take a chunk of %s deliveries; kept for when it "
                    "answers: %s", len(delivery_ids), describe(error))  # fmt: skip
        metrics.task_not_handed_over(send_deliveries.name)
        raise NotHandedOver(describe(error)) from error


def send_or_keep(task, *args: object) -> bool:
    """Send a task for work the database already holds. If the broker does not take it, the
    task is kept (notifier.delivery.unsent) and a worker hands it over as soon as the broker
    answers again; False then. Only when the database is away too does the error stand."""
    try:
        task.apply_async(args)
    except BrokerError as error:
        settings = task.app.notifier_settings
        try:
            with session_scope(settings.database_url) as session:
                keep_unsent(session, task.name, list(args), utcnow(), describe(error))
                session.commit()
        except SQLAlchemyError:
            raise error from None  # nothing kept: the task's retry, or the sweeper, must do
        log.warning("the broker did not take %s%s; kept for when it answers: %s", task.name,
                    list(args), describe(error))  # fmt: skip
        metrics.task_not_handed_over(task.name)
        return False
    return True


@shared_task(bind=True, name="notifier.tasks.poll_feeds")
@retried_through_outages
def poll_feeds(self) -> int:
    settings = _settings(self)
    with session_scope(settings.database_url) as session:
        feed_ids = [feed.id for feed in sync_feeds(session, settings.feed_urls, utcnow())]
        session.commit()
    for feed_id in feed_ids:
        send_or_keep(poll_feed, feed_id)
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
    outcome: FetchedFeed | FeedFetchError | None
    try:
        outcome = fetch(request, settings)  # no transaction open meanwhile
    except FeedFetchError as error:
        outcome = error
    with session_scope(settings.database_url) as session:
        new_ids = finish_poll(session, feed_id, outcome, utcnow(),
                              settings.category_grace_seconds)  # fmt: skip
        session.commit()
    for article_id in new_ids:
        send_or_keep(fan_out_article, article_id)
    return new_ids


@shared_task(bind=True, name="notifier.tasks.fan_out_article")
@retried_through_outages
def fan_out_article(self, article_id: int) -> dict[str, int]:
    settings = _settings(self)
    with metrics.fanout_timer("article") as timing, session_scope(settings.database_url) as session:
        planned = fanout.fan_out_article(session, article_id, settings, enqueue_send,
                                         holders.current())  # fmt: skip
        timing.counts = bool(planned)
    if planned:
        log.info("article %s: %s deliveries planned and queued", article_id, planned,
                 extra={"article_id": article_id})  # fmt: skip
    return planned


@shared_task(bind=True, name="notifier.tasks.fan_out_alert")
@retried_through_outages
def fan_out_alert(self, alert_id: int) -> dict[str, int]:
    settings = _settings(self)
    with metrics.fanout_timer("alert") as timing, session_scope(settings.database_url) as session:
        planned = fanout.fan_out_alert(session, alert_id, settings, enqueue_send,
                                       holders.current())  # fmt: skip
        timing.counts = bool(planned)
    if planned:
        log.info("alert %s: %s deliveries planned", alert_id, planned,
                 extra={"alert_id": alert_id})  # fmt: skip
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
        send_or_keep(fan_out_alert, alert_id)
    return alert_ids


@shared_task(bind=True, name="notifier.tasks.plan_digests")
@retried_through_outages
def plan_digests(self, helping: bool = False) -> int:
    """Beat: the daily and weekly digests that are due, planned once each and queued; with
    more due than a batch, more of this task (`helping`) plan beside it: DIGEST_PLANNERS in
    all, at most half of a worker's processes, so the others send what is planned."""
    settings = _settings(self)

    def ask_for_help() -> None:
        planners = min(settings.digest_planners, settings.worker_concurrency // 2)
        for _ in range(planners - 1):
            send_or_keep(plan_digests, True)

    with session_scope(settings.database_url) as session:
        return plan_and_queue_digests(session, settings, enqueue_send, utcnow(),
                                      None if helping else ask_for_help,
                                      holders.current())  # fmt: skip


@shared_task(bind=True, name="notifier.tasks.read_bounce_mailbox")
@retried_through_outages
def poll_bounce_mailbox(self) -> dict[str, int]:
    """Beat, with IMAP_HOST set: one read of the bounce mailbox. A mailbox out of reach fails
    the task (kept with its cause); the next beat tries again."""
    settings = _settings(self)
    poll = read_bounce_mailbox(settings, session_factory(settings.database_url))
    return {"taken": len(poll.taken), "left": len(poll.left), "failed": len(poll.failed)}


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
    with session_scope(settings.database_url, one_connection=True) as session:
        report = dispatch.deliver(session, delivery_ids, _outlets(settings), settings,
                                  enqueue_send, holder=holders.current())  # fmt: skip
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
        queue_in_chunks(session, overdue, settings, enqueue_send, holder=holders.current())
        record_sweep(session, now, len(articles), len(alerts), len(overdue))
        keep_after = now - timedelta(days=settings.ops_history_days)
        forget_sweeps(session, keep_after)
        forget_recoveries(session, keep_after)
        forget_task_failures(session, keep_after)
        forget_unsent(session, keep_after)
        forget_retention_runs(session, keep_after)
        # Raw bounce reports go on time even when no new report arrives to trigger it.
        drop_old_raw_reports(session, now, settings.bounce_report_days)
        session.commit()
    for article_id in articles:
        send_or_keep(fan_out_article, article_id)
    for alert_id in alerts:
        send_or_keep(fan_out_alert, alert_id)
    counts = {"articles": len(articles), "alerts": len(alerts), "deliveries": len(overdue)}
    metrics.sweep_requeued(counts)
    if articles or alerts or overdue:
        log.warning("sweep re-queued %s articles, %s alerts, %s deliveries", len(articles),
                    len(alerts), len(overdue))  # fmt: skip
    return counts


@shared_task(bind=True, name="notifier.tasks.retain_deliveries")
def retain_deliveries(self) -> dict:
    """Beat: remove finished deliveries past DELIVERY_RETENTION_DAYS, counted into the summary
    first (notifier.retention). A failure is recorded on its run and fails the task."""
    run = run_retention(_settings(self))
    return {"removed": run.removed, "batches": run.batches, "complete": run.complete}
