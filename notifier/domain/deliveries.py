"""Delivery bookkeeping: plan who gets what, claim before sending, record every outcome.

A delivery row exists before any message is sent, keyed by (article, subscriber, channel),
so planning twice adds nothing. A worker claims rows with a lease before sending; a row is
only claimable while pending and due, or while its lease has run out, so two workers never
hold the same row at once.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Table, and_, func, literal, or_, select, update
from sqlalchemy.orm import Session

from notifier.channels.base import Outcome, SendResult
from notifier.domain.sql import insert_ignoring_conflicts
from notifier.models import (
    Article,
    Delivery,
    DeliveryStatus,
    PushStatus,
    PushSubscription,
    Subscriber,
    SubscriberStatus,
    alert_categories,
    article_categories,
    push_subscription_categories,
    subscriber_categories,
)

# Bulk statements go to the table, not the ORM entity: no per-row session bookkeeping.
DELIVERIES = Delivery.__table__


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    base_seconds: float
    max_seconds: float
    max_age: timedelta = timedelta(days=1)  # a notification older than this is no news
    retry_after_max_seconds: float = 3600.0  # a longer (or absurd) Retry-After is cut to this
    retry_after_jitter_seconds: float = 1.0  # added to a Retry-After: never early, spread out

    def delay(self, attempts: int) -> float:
        """Exponential backoff with jitter: half fixed, half random, so retries spread out."""
        ceiling = min(self.max_seconds, self.base_seconds * 2 ** max(attempts - 1, 0))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def retry_delay(self, attempts: int, retry_after: float | None) -> float:
        """When to try again. The server's Retry-After is when it goes (plus a little jitter,
        never before); without one, exponential backoff from the base. From the third
        failure in a row the backoff grows under a Retry-After too, so a service that keeps
        refusing is asked less and less often and the attempts span minutes, not seconds."""
        if retry_after is None or not 0 <= retry_after < float("inf"):
            return self.delay(attempts)
        wait = min(retry_after, self.retry_after_max_seconds)
        wait += random.uniform(0, self.retry_after_jitter_seconds)
        return max(wait, self.delay(attempts - 2)) if attempts > 2 else wait


@dataclass(frozen=True)
class Audience:
    """Who a channel delivers to: recipient rows, their category links, the active state."""

    membership: Table
    recipient_column: str  # column of `membership` and of deliveries naming the recipient
    recipient: type
    active: object


AUDIENCES = {
    "email": Audience(subscriber_categories, "subscriber_id", Subscriber, SubscriberStatus.ACTIVE),
    "push": Audience(
        push_subscription_categories, "push_subscription_id", PushSubscription, PushStatus.ACTIVE
    ),
}


@dataclass(frozen=True)
class Notice:
    """What is being delivered: an article or an alert, and which categories it targets."""

    column: str  # "article_id" or "alert_id": the deliveries column naming it
    id: int
    categories: Table | None  # its category link table; None: every active recipient

    @classmethod
    def article(cls, article_id: int) -> Notice:
        return cls("article_id", article_id, article_categories)

    @classmethod
    def alert(cls, alert_id: int, target_all: bool) -> Notice:
        return cls("alert_id", alert_id, None if target_all else alert_categories)


@dataclass(frozen=True)
class PlannedChunk:
    """One chunk of a notice's audience on one channel, recorded in one statement."""

    channel: str
    planned: int  # deliveries this run inserted (0 when an earlier run had planned them)
    delivery_ids: list[int]  # the chunk's unsent deliveries, new and earlier ones


def plan_chunks(
    session: Session,
    notice: Notice,
    channels: Sequence[str],
    now: datetime,
    chunk_size: int,
    queued_at: Callable[[], datetime] | None = None,
    rates: Mapping[str, float] | None = None,
) -> Iterator[PlannedChunk]:
    """Plan a notice's deliveries a chunk of recipients at a time, never the whole audience
    in memory, taking turns between channels so the first push is planned as early as the
    first email. Recipients are walked by id (keyset): per chunk one statement finds its
    bounds and one INSERT … SELECT records it (noted queued at `queued_at()` when the
    caller is about to queue it, read per chunk: a long fan-out's last chunks are not
    mistaken for lost by the sweeper); the unique keys make a second run insert nothing,
    and such a run hands back the chunk's unsent deliveries with one more statement. The
    caller commits after each chunk, then hands it to a task.

    A channel with a send rate (`rates`, sends per second) can only start a chunk once the
    chunks before it went out: its chunks are noted queued at the time their turn comes, so
    a paced fan-out waiting its turn in the broker is not taken for lost and queued again."""
    rates = rates or {}
    plans = [
        _plan_channel(session, notice, c, now, chunk_size, queued_at, rates.get(c, 0.0))
        for c in channels
    ]
    yield from _taking_turns(plans)


def _taking_turns(streams: list[Iterator]) -> Iterator:
    """One item from each stream in turn until all are exhausted."""
    while streams:
        for stream in list(streams):
            item = next(stream, None)
            if item is None:
                streams.remove(stream)
            else:
                yield item


def _plan_channel(
    session: Session,
    notice: Notice,
    channel: str,
    now: datetime,
    chunk_size: int,
    queue_clock: Callable[[], datetime] | None,
    rate: float = 0.0,
) -> Iterator[PlannedChunk]:
    audience = AUDIENCES[channel]
    last = ahead = 0
    while True:
        queued_at = queue_clock() if queue_clock else None
        upper, size = session.execute(_chunk_bounds(audience, notice, last, chunk_size)).one()
        if upper is None:
            return
        if queued_at is not None and rate > 0:
            queued_at += timedelta(seconds=ahead / rate)
        ahead += size
        insert = _insert_chunk(session, audience, notice, channel, now, last, upper, queued_at)
        ids = sorted(session.scalars(insert.returning(Delivery.id)))
        planned = len(ids)
        if planned < size:  # an earlier run planned some: hand back its unsent ones too
            ids = _chunk_delivery_ids(session, audience, notice, channel, last, upper, queued_at)
        yield PlannedChunk(channel, planned, ids)
        last = upper


def _targeted_recipients(audience: Audience, notice: Notice):
    """(recipient id column, a SELECT of the active recipients the notice targets)."""
    recipient = audience.recipient
    if notice.categories is None:
        return recipient.id, select(recipient.id).where(recipient.status == audience.active)
    membership = audience.membership
    recipient_id = membership.c[audience.recipient_column]
    query = (
        select(recipient_id)
        .join(recipient, recipient.id == recipient_id)
        .join(notice.categories, notice.categories.c.category_id == membership.c.category_id)
        .where(notice.categories.c[notice.column] == notice.id)
        .where(recipient.status == audience.active)
    )
    return recipient_id, query


def _chunk_bounds(audience: Audience, notice: Notice, last: int, chunk_size: int):
    """The highest recipient id among the next `chunk_size` targeted recipients after `last`,
    and how many there are."""
    recipient_id, query = _targeted_recipients(audience, notice)
    chunk = (
        query.where(recipient_id > last)
        .group_by(recipient_id)
        .order_by(recipient_id)
        .limit(chunk_size)
        .subquery()
    )
    return select(func.max(chunk.c[0]), func.count())


def _insert_chunk(session, audience, notice, channel, now, last, upper, queued_at):
    recipient_id, query = _targeted_recipients(audience, notice)
    fixed = [
        literal(DeliveryStatus.PENDING.value), literal(0),
        literal(now, Delivery.created_at.type), literal(now, Delivery.next_attempt_at.type),
        literal(queued_at, Delivery.queued_at.type),
    ]  # fmt: skip
    matching = (
        query.with_only_columns(literal(notice.id), recipient_id, literal(channel), *fixed)
        .where(recipient_id > last, recipient_id <= upper)
        .distinct()
    )
    columns = [notice.column, audience.recipient_column, "channel", "status", "attempts",
               "created_at", "next_attempt_at", "queued_at"]  # fmt: skip
    return insert_ignoring_conflicts(session, Delivery.__table__).from_select(columns, matching)


def _chunk_delivery_ids(session, audience, notice, channel, last, upper, queued_at):
    recipient = getattr(Delivery, audience.recipient_column)
    where = (
        getattr(Delivery, notice.column) == notice.id,
        Delivery.channel == channel,
        recipient > last,
        recipient <= upper,
        Delivery.status.in_([DeliveryStatus.PENDING, DeliveryStatus.SENDING]),
    )
    if queued_at is None:
        ids = session.scalars(select(Delivery.id).where(*where))
    else:
        ids = session.scalars(
            update(DELIVERIES).where(*where).values(queued_at=queued_at).returning(Delivery.id)
        )
    return sorted(ids)


def plan_deliveries(session: Session, notice: Notice, channel: str, now: datetime) -> int:
    """Record one pending delivery per active recipient the notice targets on this channel
    (all chunks at once; fan-out tasks use `plan_chunks` to queue as they go)."""
    chunks = plan_chunks(session, notice, [channel], now, chunk_size=5000)
    return sum(chunk.planned for chunk in chunks)


def plan_article_deliveries(session: Session, article_id: int, channel: str, now: datetime) -> int:
    return plan_deliveries(session, Notice.article(article_id), channel, now)


def plan_article(session: Session, article_id: int, now: datetime) -> dict[str, int]:
    """Plan the article on every channel and note that its fan-out ran."""
    planned = {channel: plan_article_deliveries(session, article_id, channel, now)
               for channel in AUDIENCES}  # fmt: skip
    article = session.get(Article, article_id)
    if article is not None and article.fanned_out_at is None:
        article.fanned_out_at = now
    return planned


def count_hard_bounces(session: Session, subscriber_id: int) -> int:
    """Emails to this reader that the receiving server refused as a non-existent address."""
    return session.scalar(
        select(func.count()).where(
            Delivery.subscriber_id == subscriber_id,
            Delivery.status == DeliveryStatus.FAILED,
            Delivery.last_error.like(f"{Outcome.GONE.value}:%"),
        )
    )


def pending_delivery_chunks(
    session: Session, notice_id: int, chunk_size: int, notice_column: str = "article_id"
) -> Iterator[list[int]]:
    """A notice's unsent deliveries, a chunk at a time, taking turns between channels so
    the first push goes out as soon as the first email (keyset paging per channel)."""
    yield from _taking_turns(
        [
            _channel_chunks(session, notice_column, notice_id, channel, chunk_size)
            for channel in AUDIENCES
        ]
    )


def _channel_chunks(
    session: Session, notice_column: str, notice_id: int, channel: str, chunk_size: int
) -> Iterator[list[int]]:
    notice = getattr(Delivery, notice_column)
    last_id = 0
    while True:
        ids = list(
            session.scalars(
                select(Delivery.id)
                .where(
                    notice == notice_id,
                    Delivery.channel == channel,
                    Delivery.id > last_id,
                    Delivery.status.in_([DeliveryStatus.PENDING, DeliveryStatus.SENDING]),
                )
                .order_by(Delivery.id)
                .limit(chunk_size)
            )
        )
        if not ids:
            return
        yield ids
        last_id = ids[-1]


def unsent_deliveries(session: Session) -> list[tuple[int, str, datetime]]:
    """(id, channel, due time) of every planned delivery not sent and not claimed."""
    rows = session.execute(
        select(DELIVERIES.c.id, DELIVERIES.c.channel, DELIVERIES.c.next_attempt_at)
        .where(DELIVERIES.c.status == DeliveryStatus.PENDING)
        .order_by(DELIVERIES.c.id)
    )
    return [tuple(row) for row in rows]


def due_groups(
    due_at: dict[int, datetime], granularity_seconds: float
) -> list[tuple[datetime, list[int]]]:
    """Rows grouped by when they are due: rows due within `granularity_seconds` of a group's
    first share its task, which goes at its last member's time (never early)."""
    step = timedelta(seconds=granularity_seconds)
    groups: list[list[tuple[int, datetime]]] = []
    for item in sorted(due_at.items(), key=lambda pair: (pair[1], pair[0])):
        if groups and item[1] - groups[-1][0][1] <= step:
            groups[-1].append(item)
        else:
            groups.append([item])
    return [(group[-1][1], [delivery_id for delivery_id, _ in group]) for group in groups]


def apply_outcome(
    session: Session, delivery: Delivery, result: SendResult, now: datetime, policy: RetryPolicy
) -> float | None:
    """Record what the channel said. Returns seconds until a retry is due, or None if final."""
    delivery.lease_until = None
    delivery.claimed_by = delivery.claim_token = None
    if result.outcome is Outcome.SENT:
        delivery.status = DeliveryStatus.SENT
        delivery.sent_at = now
        delivery.last_error = None
        return None
    if result.outcome in (Outcome.GONE, Outcome.FAILED):
        delivery.status = DeliveryStatus.FAILED
        delivery.last_error = f"{result.outcome.value}: {result.detail}"
        return None
    if not result.attempted:  # held back before any request: not a failed attempt
        delivery.attempts = max(0, delivery.attempts - 1)
        delay = policy.retry_delay(1, result.retry_after)
    else:
        delay = policy.retry_delay(delivery.attempts, result.retry_after)
    too_old = now + timedelta(seconds=delay) - delivery.created_at > policy.max_age
    if delivery.attempts >= policy.max_attempts or too_old:
        delivery.status = DeliveryStatus.FAILED
        delivery.last_error = f"gave up after {delivery.attempts} attempts: {result.detail}"
        return None
    delivery.status = DeliveryStatus.PENDING
    delivery.next_attempt_at = now + timedelta(seconds=delay)
    delivery.last_error = f"temporary: {result.detail}"
    return delay


def note_queued(session: Session, delivery_ids: Sequence[int], run_at: datetime) -> None:
    """Remember that a task for these deliveries is with the broker, due at `run_at`."""
    session.execute(
        update(DELIVERIES).where(Delivery.id.in_(delivery_ids)).values(queued_at=run_at)
    )


def overdue_delivery_ids(
    session: Session, now: datetime, grace_seconds: int, requeue_after_seconds: int, limit: int
) -> list[int]:
    """Deliveries whose task must have been lost: due for a while and not handed to the broker
    recently, or claimed by a worker whose lease ran out."""
    cutoff = now - timedelta(seconds=grace_seconds)
    queued_long_ago = now - timedelta(seconds=requeue_after_seconds)
    return list(
        session.scalars(
            select(Delivery.id)
            .where(
                or_(
                    and_(
                        Delivery.status == DeliveryStatus.PENDING,
                        Delivery.next_attempt_at <= cutoff,
                        or_(Delivery.queued_at.is_(None), Delivery.queued_at <= queued_long_ago),
                    ),
                    and_(Delivery.status == DeliveryStatus.SENDING, Delivery.lease_until < now),
                )
            )
            .order_by(Delivery.id)
            .limit(limit)
        )
    )


def unplanned_article_ids(session: Session, now: datetime, grace_seconds: int) -> list[int]:
    """Articles to announce whose fan-out never ran (its task was lost with the broker)."""
    cutoff = now - timedelta(seconds=grace_seconds)
    return list(
        session.scalars(
            select(Article.id).where(
                Article.announce.is_(True),
                Article.fanned_out_at.is_(None),
                Article.first_seen_at <= cutoff,
            )
        )
    )


def delivery_counts(session: Session, article_id: int) -> dict[str, int]:
    rows = session.execute(
        select(Delivery.status, func.count())
        .where(Delivery.article_id == article_id)
        .group_by(Delivery.status)
    )
    return {str(status): count for status, count in rows}


def alert_ids_of(session: Session, delivery_ids: Sequence[int]) -> list[int]:
    return list(
        session.scalars(
            select(Delivery.alert_id)
            .where(Delivery.id.in_(delivery_ids), Delivery.alert_id.is_not(None))
            .distinct()
        )
    )
