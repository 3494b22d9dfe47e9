"""Plan a notice's deliveries: one row per recipient and channel, a chunk of recipients at a
time, recorded before anything is sent.

A delivery row is keyed by (notice, recipient, channel), so planning twice adds nothing. The
caller commits after each chunk and hands it to a task (notifier.delivery.queueing).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from sqlalchemy import Integer, String, Table, bindparam, func, literal, select, union, update
from sqlalchemy.orm import Session

from notifier.delivery.routes import AUDIENCES
from notifier.domain.audiences import Audience
from notifier.models import (
    Alert,
    Delivery,
    DeliveryStatus,
    alert_categories,
    article_categories,
)
from notifier.sql import dialect_of, insert_for

# Bulk statements go to the table, not the ORM entity: no per-row session bookkeeping.
DELIVERIES = Delivery.__table__


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
    holder: str | None = None,
    first_chunk_size: int | None = None,
) -> Iterator[PlannedChunk]:
    """Plan a notice's deliveries a chunk of recipients at a time, never the whole audience
    in memory, taking turns between channels so the first push is planned as early as the
    first email. Recipients are walked by id (keyset): per chunk one statement finds its
    bounds and one INSERT … SELECT records it (noted queued at `queued_at()` when the
    caller is about to queue it, read per chunk: a long fan-out's last chunks are not
    mistaken for lost by the sweeper, and signed by `holder`, the planning process, so they
    are queued again at once if it dies before queueing them: notifier.delivery.takeover);
    the unique keys make a second run insert nothing,
    and such a run hands back the chunk's unsent deliveries with one more statement. The
    caller commits after each chunk, then hands it to a task.

    A channel with a send rate (`rates`, sends per second) can only start a chunk once the
    chunks before it went out: its chunks are noted queued at the time their turn comes, so
    a paced fan-out waiting its turn in the broker is not taken for lost and queued again.

    Each channel's first chunk holds at most `first_chunk_size` recipients: the first
    messages wait for their own chunk to be recorded, claimed, addressed and counted, and
    a small one gets through that before the planner and the other workers fill the CPU."""
    rates = rates or {}
    sizes = (min(first_chunk_size or chunk_size, chunk_size), chunk_size)
    plans = [
        _plan_channel(session, notice, c, now, sizes, queued_at, rates.get(c, 0.0), holder)
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
    sizes: tuple[int, int],
    queue_clock: Callable[[], datetime] | None,
    rate: float = 0.0,
    holder: str | None = None,
) -> Iterator[PlannedChunk]:
    audience = AUDIENCES[channel]
    categories = _notice_categories(session, notice)
    if categories == []:
        return  # a notice in no category reaches nobody
    size_now, chunk_size = sizes  # the first chunk's size until one is yielded
    last = ahead = 0
    dialect = dialect_of(session)
    shape = (notice.column, notice.categories)
    bounds = _chunk_bounds(channel, *shape, len(categories or ()))
    insert = _insert_chunk(dialect, channel, *shape)
    values = {"notice_id": notice.id, "now": now, "channel": channel}
    values.update((f"category_{n}", c) for n, c in enumerate(categories or ()))
    while True:
        queued_at = queue_clock() if queue_clock else None
        upper, size = session.execute(bounds, {**values, "last": last, "size": size_now}).one()
        if upper is None:
            return
        if size == 0:  # only readers who left or paused in this stretch of ids
            last = upper
            continue
        if queued_at is not None and rate > 0:
            queued_at += timedelta(seconds=ahead / rate)
        ahead += size
        queued_by = holder if queued_at is not None else None
        chunk = {**values, "last": last, "upper": upper, "queued_at": queued_at,
                 "queued_by": queued_by}  # fmt: skip
        ids = sorted(session.scalars(insert, chunk))
        planned = len(ids)
        if planned < size:  # an earlier run planned some: hand back its unsent ones too
            ids = _chunk_delivery_ids(session, audience, notice, channel, last, upper,
                                      (queued_at, queued_by))  # fmt: skip
        yield PlannedChunk(channel, planned, ids)
        last, size_now = upper, chunk_size


# The values planning's statements run with: they are built once per shape of notice
# (kind, targeting, number of categories) and channel, not per chunk. Building the two
# statements with SQLAlchemy's API cost about as much CPU as running them.
_NOTICE_ID = bindparam("notice_id", type_=Integer)
_NOW = bindparam("now", type_=Delivery.created_at.type)
_LAST = bindparam("last", type_=Integer)
_UPPER = bindparam("upper", type_=Integer)
_SIZE = bindparam("size", type_=Integer)
_CHANNEL = bindparam("channel", type_=String)


def _targeted_recipients(audience: Audience, column: str, link: Table | None):
    """(recipient id column, a SELECT of the recipients the notice targets that are active
    and not paused at `now`; for an article, only those who take one of its categories
    instantly)."""
    recipient = audience.recipient
    if link is None:
        return recipient.id, select(recipient.id).where(audience.receiving(_NOW))
    membership = audience.membership
    recipient_id = membership.c[audience.recipient_column]
    query = (
        select(recipient_id)
        .join(recipient, recipient.id == recipient_id)
        .join(link, link.c.category_id == membership.c.category_id)
        .where(link.c[column] == _NOTICE_ID)
        .where(audience.receiving(_NOW))
    )
    if column == "article_id" and (instantly := audience.instantly()) is not None:
        query = query.where(instantly)  # digest readers get it in their digest
    return recipient_id, query


def _notice_categories(session: Session, notice: Notice) -> list[int] | None:
    """The categories the notice targets; None when it goes to every active recipient."""
    if notice.categories is None:
        return None
    link = notice.categories
    return list(
        session.scalars(select(link.c.category_id).where(link.c[notice.column] == notice.id))
    )


@lru_cache(maxsize=256)
def _chunk_bounds(channel: str, column: str, link: Table | None, category_count: int):
    """The highest recipient id among the next `size` recipients after `last` who follow one
    of the notice's categories (`category_0`, `category_1`, ...), and how many of them are
    targeted (active, not paused, taking it instantly: what _insert_chunk records).

    Each category's members are read in id order from the (category, recipient) index and
    only `size` of them, so a chunk costs the same at the audience's start as at its end:
    joining the categories first made PostgreSQL read and sort the whole remaining audience
    for every chunk (160 ms a chunk at 100,000 readers, the first one included)."""
    audience = AUDIENCES[channel]
    if link is None:  # every active recipient
        recipient_id, query = _targeted_recipients(audience, column, link)
        chunk = query.where(recipient_id > _LAST).order_by(recipient_id).limit(_SIZE)
        chunk = chunk.subquery()
        return select(func.max(chunk.c[0]), func.count())
    membership = audience.membership
    member = membership.c[audience.recipient_column]
    instantly = audience.instantly() if column == "article_id" else None
    branches = []
    for n in range(category_count):
        category = bindparam(f"category_{n}", type_=Integer)
        walk = select(member).where(membership.c.category_id == category, member > _LAST)
        if instantly is not None:
            walk = walk.where(instantly)  # digest readers get it in their digest
        branch = walk.order_by(member).limit(_SIZE).subquery()
        branches.append(select(branch.c[0].label("id")))
    followers = union(*branches).subquery()
    candidates = select(followers.c.id).order_by(followers.c.id).limit(_SIZE).subquery()
    recipient = audience.recipient
    targeted = func.count().filter(audience.receiving(_NOW))  # NULL for a missing recipient
    joined = candidates.outerjoin(recipient, recipient.id == candidates.c.id)
    return select(func.max(candidates.c.id), targeted).select_from(joined)


@lru_cache(maxsize=64)
def _insert_chunk(dialect: str, channel: str, column: str, link: Table | None):
    """INSERT … SELECT of the chunk's deliveries, the recipients in (`last`, `upper`], noted
    queued at `queued_at` by `queued_by`; RETURNING the new rows' ids."""
    audience = AUDIENCES[channel]
    recipient_id, query = _targeted_recipients(audience, column, link)
    fixed = [
        literal(DeliveryStatus.PENDING.value), literal(0), _NOW, _NOW,
        bindparam("queued_at", type_=Delivery.queued_at.type),
        bindparam("queued_by", type_=Delivery.queued_by.type),
    ]  # fmt: skip
    matching = (
        query.with_only_columns(_NOTICE_ID, recipient_id, _CHANNEL, *fixed)
        .where(recipient_id > _LAST, recipient_id <= _UPPER)
        .distinct()
    )
    columns = [column, audience.recipient_column, "channel", "status", "attempts",
               "created_at", "next_attempt_at", "queued_at", "queued_by"]  # fmt: skip
    statement = insert_for(dialect, DELIVERIES).from_select(columns, matching)
    return statement.returning(DELIVERIES.c.id)


def _chunk_delivery_ids(session, audience, notice, channel, last, upper, note):
    queued_at, queued_by = note
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
            update(DELIVERIES)
            .where(*where)
            .values(queued_at=queued_at, queued_by=queued_by)
            .returning(Delivery.id)
        )
    return sorted(ids)


def alert_notice(alert: Alert) -> Notice:
    return Notice.alert(alert.id, alert.target_all)
