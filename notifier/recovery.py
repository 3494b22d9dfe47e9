"""Bring work back after a fault, from a worker's main process (timers, not tasks: they must
run while every pool child is busy or dead): the claims of dead worker processes, what a
dead worker held in memory, everything owed when the broker lost its queues, and what the
broker did not take while it was down."""

from __future__ import annotations

import logging

from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy.orm import Session

from notifier import holders, metrics
from notifier.config import Settings
from notifier.db import session_scope
from notifier.delivery.queueing import note_queued, queue_again, queue_in_chunks, queue_when_due
from notifier.delivery.takeover import take_over
from notifier.delivery.unsent import delivery_ids_of, next_unsent, task_arguments
from notifier.domain.deliveries import unplanned_article_ids, unsent_deliveries
from notifier.models import RecoveryCause, UnsentTask
from notifier.ops.recoveries import record_recovery
from notifier.tasks import OUTAGES, enqueue_send, fan_out_article, send_or_keep
from notifier.timeutil import utcnow

log = logging.getLogger(__name__)


def requeue_unsent(settings: Settings, fan_out_again: bool = True) -> dict[str, int]:
    """The broker lost its queues: queue every unsent planned delivery again (due ones now,
    per channel and at its pace; the others for their time) and, with `fan_out_again`, every
    article whose fan-out had not run. Claims make a task that survived somewhere harmless."""
    with session_scope(settings.database_url) as session:
        now = utcnow()
        rows = unsent_deliveries(session)
        articles = unplanned_article_ids(session, now, 0) if fan_out_again else []
        queue_again(session, rows, settings, enqueue_send, now, holders.current())
        count = len(rows)
        record_recovery(session, now, RecoveryCause.BROKER_LOST, count)
        session.commit()
    for article_id in articles:
        send_or_keep(fan_out_article, article_id)
    metrics.deliveries_recovered("broker_lost", count)
    log.warning("the broker lost its queues: queued %s unsent deliveries and %s articles again",
                count, len(articles))  # fmt: skip
    return {"deliveries": count, "articles": len(articles)}


def check_broker(settings: Settings, marker) -> bool:
    """From a worker's main process: if the broker lost its queues, this process (and only
    this one) queues everything owed again. Outages are left to the next check."""
    verdict = marker.check()
    if verdict is None:
        return False
    try:
        requeue_unsent(settings, fan_out_again=verdict == "lost")
    except OUTAGES as error:
        log.error("the broker lost its queues but re-queueing failed (the sweeper will "
                  "find the work): %s", error)  # fmt: skip
    return True


def take_over_dead_workers(settings: Settings, local, handled: set, starting: bool) -> int:
    """From a worker's main process (a timer, not a task: it must run while every pool
    child is busy or dead): their claimed rows, and the rows they noted queued that no
    sender has claimed (perhaps never handed to the broker: killed mid-planning). When a
    worker is newly known dead, or this one just started (perhaps in place of one that
    died), what a worker holds besides claims is queued again too: retries waiting in its
    memory as ETA tasks, a fan-out it had not finished. Claims make a copy that survived
    elsewhere harmless. Outages wait for the next check."""
    taker = holders.current()
    try:
        with session_scope(settings.database_url) as session:
            now = utcnow()
            verdict = take_over(session, now, settings.worker_stale_seconds, local, handled,
                                taker)  # fmt: skip
            ids, noted = verdict.released, verdict.noted
            record_recovery(session, now, RecoveryCause.DEAD_WORKER, len(ids) + len(noted))
            session.commit()
            if ids:
                queue_in_chunks(session, ids, settings, enqueue_send, holder=taker)
            if noted:
                queue_again(session, noted, settings, enqueue_send, utcnow(), taker)
            articles = []
            if verdict.dead_workers or starting:
                now = utcnow()
                requeued = {i for i, _, _ in noted}
                waiting = {i: due for i, _, due in unsent_deliveries(session, due_after=now)
                           if i not in requeued}  # fmt: skip
                queue_when_due(session, waiting, settings, enqueue_send, taker)
                articles = unplanned_article_ids(session, now, settings.worker_stale_seconds)
        for article_id in articles:
            send_or_keep(fan_out_article, article_id)
    except OUTAGES as error:
        log.warning("takeover check skipped: %s", error)
        return 0
    if ids or noted:
        metrics.deliveries_recovered("dead_worker", len(ids) + len(noted))
    if ids:
        log.warning("took over %s deliveries claimed by dead worker processes", len(ids))
    if noted:
        log.warning("queued again %s deliveries noted queued by dead worker processes and "
                    "not yet claimed", len(noted))  # fmt: skip
    if verdict.dead_workers:
        log.warning("workers found dead: %s; their waiting retries and unfinished fan-outs "
                    "queued again", ", ".join(verdict.dead_workers))  # fmt: skip
    return len(ids) + len(noted)


def hand_over_unsent(settings: Settings) -> int:
    """From a worker's main process, every BROKER_CHECK_SECONDS: hand the broker, oldest
    first, the tasks it did not take when they were sent (notifier.delivery.unsent), as soon
    as it answers. The first refusal ends the round: the broker is still away, and the rest
    waits for the next check. Returns the tasks handed over."""
    handed = deliveries = 0
    try:
        with session_scope(settings.database_url) as session:
            while (row := next_unsent(session)) is not None:
                ids = _noted_again(session, row)
                try:
                    _send(row, settings)
                except BrokerError as error:
                    session.rollback()
                    log.info("the broker still does not take what it refused: %s", error)
                    break
                session.commit()  # a crash before this: sent twice, which claims make harmless
                handed, deliveries = handed + 1, deliveries + len(ids)
            record_recovery(session, utcnow(), RecoveryCause.BROKER_UNREACHABLE, deliveries)
            session.commit()
    except OUTAGES as error:
        log.warning("unsent tasks not handed over yet: %s", error)
    if handed:
        metrics.deliveries_recovered("broker_unreachable", deliveries)
        log.warning("handed the broker %s tasks it had not taken (%s deliveries)", handed,
                    deliveries)  # fmt: skip
    return handed


def _noted_again(session: Session, row: UnsentTask) -> list[int]:
    """Mark the task handed over and its rows (a chunk's) queued again, in the transaction
    that commits once the broker took it."""
    now = utcnow()
    row.handed_over_at = now
    ids = delivery_ids_of(row)
    if ids:
        note_queued(session, ids, max(row.turn_at, now), holders.current())
    session.flush()
    return ids


def _send(row: UnsentTask, settings: Settings) -> None:
    """The kept task as it was sent, due when it was due (a long wait in hops, as for any
    countdown: notifier.delivery.queueing.queue_when_due)."""
    wait = (row.run_at - utcnow()).total_seconds()
    countdown = min(wait, settings.broker_eta_max_seconds) if wait > 0 else None
    fan_out_article.app.send_task(row.task_name, args=task_arguments(row), countdown=countdown)
