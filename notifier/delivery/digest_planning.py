"""Plan the digests that are due: per reader and period one digest, its articles fixed, and
one email delivery for it, in the transaction that moves the reader's schedule forward.

The beat may fire twice, or late after an outage: a schedule is locked while planned and its
next time is set past `now`, and a digest is unique per reader, cadence and period, so a
period is planned once and a reader whose hour passed several times meanwhile gets one late
digest. An empty period plans nothing; the schedule still moves on.

A batch of schedules is planned in a fixed number of statements, whatever its size (the
readers, their digest categories, the articles of the period, what went out instantly, one
INSERT of the digests, one of their deliveries, one UPDATE of the schedules): a morning
hour with a hundred thousand readers due is planned in seconds, not minutes.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from notifier.config import Settings
from notifier.delivery.digest_selection import DigestReader, PeriodArticles, digest_readers
from notifier.delivery.queueing import Enqueue, hand_over
from notifier.delivery.stale_news import take_leftovers
from notifier.domain.cadence import next_digest_at
from notifier.models import (
    Cadence,
    Delivery,
    DeliveryStatus,
    Digest,
    DigestSchedule,
    SubscriberStatus,
)
from notifier.sql import among, insert_ignoring_conflicts
from notifier.timeutil import utcnow

SCHEDULES = DigestSchedule.__table__


def plan_and_queue_digests(
    session: Session, settings: Settings, enqueue: Enqueue, now: datetime,
    ask_for_help: Callable[[], object] | None = None, holder: str | None = None,
) -> int:  # fmt: skip
    """What the beat task does: plan due digests a batch of schedules at a time, commit,
    queue their deliveries; until none is due. Digests planned (emails queued).

    `ask_for_help`: called once if the first batch was full (more is due than one batch): it
    starts more planners, which take the schedules this one has not locked, so a morning
    hour is planned by several processes at once. `holder`: the planning process, which
    signs its rows' note (queued again at once if it dies before queueing them)."""
    queued, size = 0, settings.delivery_chunk_size
    while True:
        schedules, delivery_ids = plan_due_digests(session, now, settings.digest_plan_batch,
                                                   holder)  # fmt: skip
        session.commit()  # schedules moved on, digests planned (and noted queued): then tasks
        if ask_for_help is not None and schedules == settings.digest_plan_batch:
            ask_for_help()
            ask_for_help = None
        for start in range(0, len(delivery_ids), size):
            hand_over(session, delivery_ids[start : start + size], enqueue, noted=True)
        queued += len(delivery_ids)
        if schedules < settings.digest_plan_batch:
            return queued


@dataclass(frozen=True)
class _Due:
    """A locked schedule: whose, which cadence, the period it closes."""

    subscriber_id: int
    cadence: Cadence
    due_at: datetime
    since: datetime


def plan_due_digests(
    session: Session, now: datetime, batch: int, holder: str | None = None
) -> tuple[int, list[int]]:
    """Plan up to `batch` due schedules: (schedules planned, email deliveries planned, noted
    queued by `holder`). The caller commits, then queues them. Schedules another planner
    holds are left to it."""
    rows = session.execute(
        select(SCHEDULES.c.subscriber_id, SCHEDULES.c.cadence, SCHEDULES.c.next_at,
               SCHEDULES.c.since)
        .where(SCHEDULES.c.next_at <= now)
        .order_by(SCHEDULES.c.next_at, SCHEDULES.c.subscriber_id)
        .limit(batch)
        .with_for_update(skip_locked=True)
    ).all()  # fmt: skip
    due = [_Due(row[0], Cadence(row[1]), row[2], row[3]) for row in rows]
    if not due:
        return 0, []
    readers = digest_readers(session, sorted({d.subscriber_id for d in due}))
    _move_schedules_on(session, due, readers, now)  # whatever follows: each period once
    wanted = [d for d in due if _wanted(d, readers)]
    period = PeriodArticles.load(session, wanted, readers, now)
    # Articles whose instant email came too late (stale) ride along in these digests.
    period.take_leftovers(take_leftovers(session, sorted({d.subscriber_id for d in wanted}),
                                         now), session)  # fmt: skip
    digests = []
    for schedule in wanted:  # the others left, are suppressed or unconfirmed: nothing to plan
        reader = readers[schedule.subscriber_id]
        article_ids, category_ids = period.for_reader(
            reader, reader.categories.get(schedule.cadence, []), schedule.since
        )
        if article_ids:  # nothing new: no digest, no email
            digests.append(_digest_values(schedule, category_ids, article_ids, now))
    return len(due), _insert_digests(session, digests, now, holder)


def _wanted(schedule: _Due, readers: dict[int, DigestReader]) -> bool:
    reader = readers.get(schedule.subscriber_id)
    return reader is not None and reader.status == SubscriberStatus.ACTIVE


def _move_schedules_on(
    session: Session, due: Sequence[_Due], readers: dict[int, DigestReader], now: datetime
) -> None:
    """Each schedule's next local digest time past `now`, and its period starting now. Readers
    sharing a zone and digest time share the computation and one UPDATE: a batch due at the
    same moment takes a statement per distinct next time, not one per reader."""
    next_times: dict[tuple, datetime] = {}
    moved: dict[tuple[str, datetime], list[int]] = defaultdict(list)
    for schedule in due:
        reader = readers.get(schedule.subscriber_id)
        if reader is None:
            continue  # deleted meanwhile: its schedule went with it
        key = (schedule.cadence, reader.timezone, reader.digest_hour, reader.digest_weekday)
        if key not in next_times:
            next_times[key] = next_digest_at(schedule.cadence, reader, now)
        moved[(schedule.cadence.value, next_times[key])].append(schedule.subscriber_id)
    for (cadence, next_at), subscriber_ids in moved.items():
        session.execute(
            update(SCHEDULES)
            .where(SCHEDULES.c.cadence == cadence,
                   among(session, SCHEDULES.c.subscriber_id, subscriber_ids))
            .values(next_at=next_at, since=now)
        )  # fmt: skip


def _digest_values(schedule: _Due, category_ids: list[int], article_ids: list[int],
                   now: datetime) -> dict:  # fmt: skip
    return {
        "subscriber_id": schedule.subscriber_id, "cadence": schedule.cadence.value,
        "due_at": schedule.due_at, "since": schedule.since, "until": now,
        "article_ids": json.dumps(article_ids), "category_ids": json.dumps(category_ids),
        "created_at": now,
    }  # fmt: skip


def _insert_digests(
    session: Session, digests: list[dict], now: datetime, holder: str | None
) -> list[int]:
    """The digests, then one email delivery each. Executemany: SQLAlchemy sends them as
    multi-row INSERTs compiled once (one .values() list per batch would compile thousands
    of parameters each time). A digest planned before (a schedule restored from a backup,
    say) conflicts and gets nothing."""
    if not digests:
        return []
    planned = session.execute(
        insert_ignoring_conflicts(session, Digest.__table__).returning(
            Digest.id, Digest.subscriber_id
        ),
        digests,
    ).all()
    if not planned:
        return []
    queued_at = utcnow()  # noted with the rows: the caller hands them over once committed
    deliveries = [
        {"digest_id": digest_id, "subscriber_id": subscriber_id, "channel": "email",
         "status": DeliveryStatus.PENDING.value, "attempts": 0, "created_at": now,
         "next_attempt_at": now, "queued_at": queued_at, "queued_by": holder}
        for digest_id, subscriber_id in sorted(planned)
    ]  # fmt: skip
    return sorted(
        session.scalars(
            insert_ignoring_conflicts(session, Delivery.__table__).returning(Delivery.id),
            deliveries,
        )
    )
