"""Thin Celery tasks: ids in, domain + channel, outcome mapped to a retry. Safe to run twice."""

from __future__ import annotations

import logging
from functools import cache

from celery import shared_task

from notifier.channels.base import Outcome
from notifier.channels.registry import email_channel, outlets
from notifier.compose import Composer
from notifier.config import Settings
from notifier.db import session_scope
from notifier.dispatch import retry_policy
from notifier.dispatch import send_deliveries as send_batch
from notifier.domain.deliveries import (
    overdue_delivery_ids,
    pending_delivery_chunks,
    plan_article,
    unplanned_article_ids,
)
from notifier.domain.feeds import sync_feeds
from notifier.feed_poller import poll_feed as poll_one_feed
from notifier.timeutil import utcnow

log = logging.getLogger(__name__)


def _settings(task) -> Settings:
    return task.app.notifier_settings


@cache
def _composer(settings: Settings) -> Composer:
    return Composer(settings)


@cache
def _outlets(settings: Settings) -> dict:
    return outlets(settings, _composer(settings))


@shared_task(bind=True, name="notifier.tasks.poll_feeds")
def poll_feeds(self) -> int:
    settings = _settings(self)
    with session_scope(settings.database_url) as session:
        feed_ids = [feed.id for feed in sync_feeds(session, settings.feed_urls, utcnow())]
        session.commit()
    for feed_id in feed_ids:
        poll_feed.delay(feed_id)
    return len(feed_ids)


@shared_task(bind=True, name="notifier.tasks.poll_feed")
def poll_feed(self, feed_id: int) -> list[int]:
    settings = _settings(self)
    with session_scope(settings.database_url) as session:
        new_ids = poll_one_feed(session, feed_id, settings)
        session.commit()
    for article_id in new_ids:
        fan_out_article.delay(article_id)
    return new_ids


@shared_task(bind=True, name="notifier.tasks.fan_out_article")
def fan_out_article(self, article_id: int) -> dict[str, int]:
    settings = _settings(self)
    with session_scope(settings.database_url) as session:
        planned = plan_article(session, article_id, utcnow())
        session.commit()
        chunks = 0
        for ids in pending_delivery_chunks(session, article_id, settings.delivery_chunk_size):
            send_deliveries.delay(ids)
            chunks += 1
    log.info("article %s: %s deliveries planned, %s chunks queued", article_id, planned, chunks)
    return planned


@shared_task(bind=True, name="notifier.tasks.send_deliveries")
def send_deliveries(self, delivery_ids: list[int]) -> dict:
    settings = _settings(self)
    with session_scope(settings.database_url) as session:
        report = send_batch(session, delivery_ids, _outlets(settings), settings)
    if report.retry_in:
        send_deliveries.apply_async(
            (sorted(report.retry_in),), countdown=min(report.retry_in.values())
        )
    return {"sent": report.sent, "skipped": report.skipped, "failed": report.failed,
            "retrying": len(report.retry_in)}  # fmt: skip


@shared_task(
    bind=True,
    name="notifier.tasks.send_confirmation",
    max_retries=None,  # bounded by DELIVERY_MAX_ATTEMPTS in _send_service_email
)
def send_confirmation(self, subscriber_id: int, category_ids: list[int]) -> bool:
    settings = _settings(self)
    with session_scope(settings.database_url) as session:
        message = _composer(settings).confirmation_email(session, subscriber_id, category_ids)
    return _send_service_email(self, settings, message)


@shared_task(
    bind=True,
    name="notifier.tasks.send_manage_link",
    max_retries=None,  # bounded by DELIVERY_MAX_ATTEMPTS in _send_service_email
)
def send_manage_link(self, subscriber_id: int) -> bool:
    settings = _settings(self)
    with session_scope(settings.database_url) as session:
        message = _composer(settings).manage_link_email(session, subscriber_id)
    return _send_service_email(self, settings, message)


def _send_service_email(task, settings: Settings, message) -> bool:
    """Transactional mail the reader asked for: retried on temporary failure, not recorded."""
    if message is None:
        return False
    connection = email_channel(settings).open()
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
    log.warning("%s email to %s not sent: %s", task.name, message.to, result.detail)
    return False


@shared_task(bind=True, name="notifier.tasks.sweep")
def sweep(self) -> dict:
    """Re-queue work the broker lost: unplanned articles and overdue or abandoned deliveries."""
    settings = _settings(self)
    grace = settings.sweep_seconds
    with session_scope(settings.database_url) as session:
        now = utcnow()
        articles = unplanned_article_ids(session, now, grace)
        deliveries = overdue_delivery_ids(session, now, grace, settings.sweep_batch_limit)
    for article_id in articles:
        fan_out_article.delay(article_id)
    for start in range(0, len(deliveries), settings.delivery_chunk_size):
        send_deliveries.delay(deliveries[start : start + settings.delivery_chunk_size])
    return {"articles": len(articles), "deliveries": len(deliveries)}
