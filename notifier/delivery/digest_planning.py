"""Plan the digests that are due: per reader and period one digest, its articles fixed, and
one email delivery for it, in the transaction that moves the reader's schedule forward.

The beat may fire twice, or late after an outage: a schedule is locked while planned and its
next time is set past `now`, and a digest is unique per reader, cadence and period, so a
period is planned once and a reader whose hour passed several times meanwhile gets one late
digest. An empty period plans nothing; the schedule still moves on.
"""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import func, literal, select
from sqlalchemy.orm import Session

from notifier.config import Settings
from notifier.delivery.queueing import Enqueue, queue_in_chunks
from notifier.delivery.stale_news import take_leftovers
from notifier.domain.cadence import next_digest_at
from notifier.models import (
    Article,
    Cadence,
    Delivery,
    DeliveryStatus,
    Digest,
    DigestSchedule,
    Subscriber,
    SubscriberStatus,
    article_categories,
    subscriber_categories,
)
from notifier.sql import insert_ignoring_conflicts

# An instant email in one of these states went, or is still going, to the reader.
EMAILED_OR_GOING = (DeliveryStatus.SENT, DeliveryStatus.SENDING, DeliveryStatus.PENDING)


def plan_and_queue_digests(
    session: Session, settings: Settings, enqueue: Enqueue, now: datetime
) -> int:
    """What the beat task does: plan due digests a batch of schedules at a time, commit,
    queue their deliveries; until none is due. Digests planned (emails queued)."""
    queued = 0
    while True:
        schedules, delivery_ids = plan_due_digests(session, now, settings.digest_plan_batch)
        session.commit()  # schedules moved on, digests planned: before any task runs
        queue_in_chunks(session, delivery_ids, settings, enqueue)
        queued += len(delivery_ids)
        if schedules < settings.digest_plan_batch:
            return queued


def plan_due_digests(session: Session, now: datetime, batch: int) -> tuple[int, list[int]]:
    """Plan up to `batch` due schedules: (schedules planned, email deliveries planned). The
    caller commits, then queues them. Schedules another planner holds are left to it."""
    schedules = session.scalars(
        select(DigestSchedule)
        .where(DigestSchedule.next_at <= now)
        .order_by(DigestSchedule.next_at)
        .limit(batch)
        .with_for_update(skip_locked=True)
    ).all()
    delivery_ids = []
    for schedule in schedules:
        delivery_id = _plan_one(session, schedule, now)
        if delivery_id is not None:
            delivery_ids.append(delivery_id)
    session.flush()
    return len(schedules), delivery_ids


def _plan_one(session: Session, schedule: DigestSchedule, now: datetime) -> int | None:
    subscriber = session.get_one(Subscriber, schedule.subscriber_id)  # its schedule row is locked
    cadence = Cadence(schedule.cadence)
    due_at, since = schedule.next_at, schedule.since
    # Moved on first: whatever follows, this period is planned once.
    schedule.next_at = next_digest_at(cadence, subscriber, now)
    schedule.since = now
    if subscriber.status != SubscriberStatus.ACTIVE:
        return None  # left, suppressed or unconfirmed: nothing to plan, nothing to skip
    category_ids = digest_category_ids(session, subscriber.id, cadence)
    article_ids = digest_article_ids(session, subscriber.id, category_ids, since, now)
    # Articles whose instant email came too late (stale) ride along in this digest.
    leftovers = take_leftovers(session, subscriber.id, now)
    if leftovers:
        article_ids, category_ids = _with_leftovers(session, subscriber.id, article_ids,
                                                    category_ids, leftovers)  # fmt: skip
    if not article_ids:
        return None  # nothing new: no digest, no email
    digest_id = session.scalar(
        insert_ignoring_conflicts(session, Digest.__table__)
        .values(subscriber_id=subscriber.id, cadence=cadence.value, due_at=due_at, since=since,
                until=now, article_ids=json.dumps(article_ids),
                category_ids=json.dumps(category_ids), created_at=now)
        .returning(Digest.id)
    )  # fmt: skip
    if digest_id is None:
        return None  # planned before (a schedule restored from a backup, say)
    return session.scalar(
        insert_ignoring_conflicts(session, Delivery.__table__)
        .values(digest_id=digest_id, subscriber_id=subscriber.id, channel="email",
                status=DeliveryStatus.PENDING.value, attempts=0, created_at=now,
                next_attempt_at=now)
        .returning(Delivery.id)
    )  # fmt: skip


def _with_leftovers(
    session: Session, subscriber_id: int, article_ids: list[int], category_ids: list[int],
    leftovers: list[int],
) -> tuple[list[int], list[int]]:  # fmt: skip
    """The digest's articles and categories with the leftovers added (newest first), each
    under the categories of it the reader still follows (a leftover they no longer follow
    is dropped)."""
    followed = select(subscriber_categories.c.category_id).where(
        subscriber_categories.c.subscriber_id == subscriber_id
    )
    rows = session.execute(
        select(article_categories.c.article_id, article_categories.c.category_id).where(
            article_categories.c.article_id.in_(leftovers),
            article_categories.c.category_id.in_(followed),
        )
    ).all()
    kept = {article_id for article_id, _ in rows} | set(article_ids)
    newest = func.coalesce(Article.published_at, Article.first_seen_at)
    ordered = list(session.scalars(
        select(Article.id).where(Article.id.in_(kept))
        .order_by(newest.desc(), Article.id.desc())
    ))  # fmt: skip
    return ordered, sorted(set(category_ids) | {category_id for _, category_id in rows})


def digest_category_ids(session: Session, subscriber_id: int, cadence: Cadence) -> list[int]:
    """The categories the reader takes in this digest."""
    return sorted(
        session.scalars(
            select(subscriber_categories.c.category_id).where(
                subscriber_categories.c.subscriber_id == subscriber_id,
                subscriber_categories.c.cadence == cadence.value,
            )
        )
    )


def digest_article_ids(
    session: Session, subscriber_id: int, category_ids: list[int], since: datetime,
    until: datetime,
) -> list[int]:  # fmt: skip
    """Articles to announce in these categories first seen in (since, until], newest first,
    without those emailed (or being emailed) to this reader instantly."""
    if not category_ids:
        return []
    emailed = select(Delivery.article_id).where(
        Delivery.subscriber_id == subscriber_id,
        Delivery.channel == "email",
        Delivery.article_id.is_not(None),
        Delivery.status.in_(EMAILED_OR_GOING),
    )
    in_categories = (
        select(literal(1))
        .where(article_categories.c.article_id == Article.id)
        .where(article_categories.c.category_id.in_(category_ids))
        .exists()
    )
    newest = func.coalesce(Article.published_at, Article.first_seen_at)
    return list(
        session.scalars(
            select(Article.id)
            .where(Article.announce.is_(True), in_categories)
            .where(Article.first_seen_at > since, Article.first_seen_at <= until)
            .where(Article.id.not_in(emailed))
            .order_by(newest.desc(), Article.id.desc())
        )
    )
