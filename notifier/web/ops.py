"""The ops dashboard (admins): workers, queues, feeds, deliveries, failures, work in progress,
and the buttons to act: poll a feed now, retry failed deliveries of a cause."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from flask import Blueprint, redirect, render_template, request, url_for
from kombu.exceptions import OperationalError as BrokerUnavailable
from sqlalchemy import func, select

from notifier.delivery.queueing import queue_in_chunks
from notifier.delivery.routes import CHANNELS
from notifier.delivery.unsent import unsent_summary
from notifier.models import Alert, AlertStatus, Article, Delivery, DeliveryStatus, Feed
from notifier.ops.deliverability import email_rates
from notifier.ops.delivery_chart import chart, hourly_outcomes
from notifier.ops.failures import deliveries_by_outcome, recent_failures, retry_failed
from notifier.ops.feeds import feed_health
from notifier.ops.held import held_for_quiet_hours
from notifier.ops.queues import queue_depths
from notifier.ops.recoveries import recovery_summary
from notifier.ops.retention_runs import retention_summary
from notifier.ops.skips import skips_by_reason
from notifier.ops.sweeps import sweep_summary
from notifier.ops.task_failures import recent_task_failures
from notifier.ops.workers import worker_states
from notifier.task_queue import enqueue_or_refuse, send_or_keep
from notifier.timeutil import utcnow
from notifier.web.auth import admin_required
from notifier.web.context import db, queue, settings
from notifier.wording import plural

bp = Blueprint("ops", __name__, url_prefix="/ops")
OUTCOMES = ("sent", "failed", "gone", "skipped", "queued")


def _queues() -> tuple[dict[str, int], str | None]:
    try:
        return queue_depths(queue().celery), None
    except (BrokerUnavailable, OSError) as error:  # shown on the page, not raised
        return {}, f"broker unreachable: {error}"


def _scheduled() -> list[Alert]:
    """Alerts waiting for their time: listed apart, since nothing of theirs is going out."""
    query = select(Alert).where(Alert.status == AlertStatus.SCHEDULED)
    return list(db().scalars(query.order_by(Alert.send_at, Alert.id)))


def _in_progress(now):
    alerts = db().scalars(
        select(Alert).where(Alert.status.in_([AlertStatus.SENDING, AlertStatus.QUEUED]))
        .order_by(Alert.id)
    ).all()  # fmt: skip
    open_statuses = [DeliveryStatus.PENDING, DeliveryStatus.SENDING]
    articles = (
        db()
        .execute(
            select(Article.id, Article.title, func.count(Delivery.id))
            .join(Delivery, Delivery.article_id == Article.id)
            .where(Delivery.status.in_(open_statuses))
            .group_by(Article.id, Article.title)
            .order_by(Article.id.desc())
            .limit(20)
        )
        .all()
    )
    return alerts, articles


@bp.get("/")
@admin_required
def dashboard():
    now, s = utcnow(), settings()
    depths, broker_error = _queues()
    alerts, articles = _in_progress(now)
    traffic = {
        "last hour": deliveries_by_outcome(db(), now - timedelta(hours=1)),
        "last day": deliveries_by_outcome(db(), now - timedelta(days=1)),
    }
    return render_template(
        "pages/ops/dashboard.html", now=now,
        workers=worker_states(db(), now, s.worker_stale_seconds),
        depths=depths, broker_error=broker_error,
        feeds=feed_health(db(), now, s.feed_stale_seconds),
        traffic=traffic, outcomes=OUTCOMES, channels=CHANNELS,
        failures=recent_failures(db(), now), alerts=alerts, articles=articles,
        skips=skips_by_reason(db(), now - timedelta(days=1)),
        held=held_for_quiet_hours(db(), now),
        scheduled=_scheduled(), email_rates=email_rates(db(), now, s),
        task_failures=recent_task_failures(db(), now, 86400), sweep=sweep_summary(db(), now),
        recovered=recovery_summary(db(), now), unsent=unsent_summary(db(), now),
        retention=retention_summary(db(), now),
        notice=request.args.get("notice"), refresh_ms=int(s.ops_refresh_seconds * 1000),
        chart=chart(hourly_outcomes(db(), now, s.ops_chart_hours), ZoneInfo(s.site_timezone)),
    )  # fmt: skip


@bp.post("/feeds/<int:feed_id>/poll")
@admin_required
def poll_now(feed_id: int):
    feed = db().get(Feed, feed_id)
    if feed is None:
        return redirect(url_for("ops.dashboard", notice="No such feed."), 303)
    sent = send_or_keep(db(), queue().poll_feed, feed_id)
    later = "The broker is down; the poll goes as soon as it is back."
    notice = f"Polling {feed.url} now." if sent else later
    return redirect(url_for("ops.dashboard", notice=notice), 303)


@bp.post("/failures/retry")
@admin_required
def retry():
    """Retry one delivery, or every failure of a cause (channel + cause as grouped above)."""
    now = utcnow()
    if request.form.get("delivery_id", "").isdigit():
        wanted = [int(request.form["delivery_id"])]
    else:
        channel, cause = request.form.get("channel"), request.form.get("cause")
        wanted = next(
            (list(g.delivery_ids) for g in recent_failures(db(), now)
             if g.channel == channel and g.cause == cause), [],
        )  # fmt: skip
    ids = retry_failed(db(), wanted, now)
    queue_in_chunks(db(), ids, settings(), enqueue_or_refuse(queue().send_deliveries))
    return redirect(
        url_for("ops.dashboard", notice=f"Retrying {plural(len(ids), 'delivery', 'deliveries')}."),
        303,
    )
