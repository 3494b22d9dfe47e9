"""Hand deliveries to the broker: the one way a chunk is queued.

Whoever queues (the fan-out, a batch's retries, the sweeper, recovery after a fault, the ops
dashboard's retry button) notes the chunk queued, commits, then enqueues: no task runs
before its rows exist, and the sweeper knows a noted chunk is with the broker, not lost.
A worker process signs its note (`holder`, as claims name it): killed between the commit
and the enqueue, its rows are queued again as soon as it is known dead
(notifier.delivery.takeover), not when the sweeper takes them for lost.
When the broker does not take it, the note is taken back and the chunk kept as unsent
(notifier.delivery.unsent): a worker hands it over as soon as the broker answers again.
The enqueue itself is the caller's (a Celery task's apply_async, the web app's TaskQueue),
so this module knows nothing of Celery.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from notifier.config import Settings
from notifier.delivery.planning import Notice, plan_chunks
from notifier.delivery.routes import in_queue_order, send_rates
from notifier.delivery.unsent import SEND_DELIVERIES, NotHandedOver, keep_unsent
from notifier.models import QUEUED_BY_WAITING, Delivery
from notifier.timeutil import utcnow

DELIVERIES = Delivery.__table__

Enqueue = Callable[[list[int], float], object]
"""Send a task for these delivery ids, to run in this many seconds (0: now); raise
NotHandedOver when the broker did not take it."""


def hand_over(
    session: Session,
    delivery_ids: Sequence[int],
    enqueue: Enqueue,
    countdown: float = 0.0,
    turn_in: float = 0.0,
    noted: bool = False,
    holder: str | None = None,
) -> bool:
    """Note a chunk queued by `holder` (due to run after `countdown`, or, a paced channel's
    later chunk, to start in `turn_in` s), commit, and hand it to the broker. `noted`: the
    planner already wrote queued_at and queued_by with the rows. False: the broker did not
    take it; the chunk is kept (committed) for a worker to hand over when the broker answers
    again."""
    if not noted and delivery_ids:
        run_at = utcnow() + timedelta(seconds=max(countdown, turn_in))
        note_queued(session, delivery_ids, run_at, holder)
    session.commit()
    if not delivery_ids:
        return True
    try:
        enqueue(list(delivery_ids), countdown)
    except NotHandedOver as refused:
        keep_refused_chunk(session, delivery_ids, countdown, str(refused))
        session.commit()
        return False
    return True


def keep_refused_chunk(
    session: Session, delivery_ids: Sequence[int], countdown: float, cause: str
) -> None:
    """The broker did not take this chunk: its rows are no longer noted queued (the ledger
    tells the truth), and the chunk is kept, with its paced turn, to be handed over."""
    now = utcnow()
    run_at = now + timedelta(seconds=countdown)
    turn_at = session.scalar(
        select(func.max(Delivery.queued_at)).where(Delivery.id.in_(delivery_ids))
    )  # the planner's note: a paced chunk's turn
    note_queued(session, delivery_ids, None)
    keep_unsent(session, SEND_DELIVERIES, [list(delivery_ids)], now, cause, run_at,
                max(turn_at or run_at, run_at))  # fmt: skip


def plan_and_queue(
    session: Session, notice: Notice, channels: Sequence[str], settings: Settings,
    enqueue: Enqueue, holder: str | None = None,
) -> dict[str, int]:  # fmt: skip
    """Plan a chunk, commit, queue it, next chunk: the first messages go out while the rest
    of the audience is still being planned, and memory holds one chunk, not the audience.
    Each chunk is noted queued by `holder`, the planning process."""
    channels = in_queue_order(channels)
    planned = dict.fromkeys(channels, 0)
    chunks = plan_chunks(session, notice, channels, utcnow(), settings.delivery_chunk_size,
                         queued_at=utcnow, rates=send_rates(settings), holder=holder,
                         first_chunk_size=settings.delivery_first_chunk_size)  # fmt: skip
    for chunk in chunks:
        planned[chunk.channel] += chunk.planned
        hand_over(session, chunk.delivery_ids, enqueue, noted=True)
    return planned


def queue_in_chunks(
    session: Session,
    delivery_ids: Sequence[int],
    settings: Settings,
    enqueue: Enqueue,
    rate: float = 0.0,
    holder: str | None = None,
) -> None:
    """Queue rows due now a chunk at a time, noted queued by `holder`; on a paced channel
    (`rate` per second) each chunk is noted queued for when its turn comes."""
    size = settings.delivery_chunk_size
    for start in range(0, len(delivery_ids), size):
        turn_in = start / rate if rate > 0 else 0.0
        hand_over(session, delivery_ids[start : start + size], enqueue, turn_in=turn_in,
                  holder=holder)  # fmt: skip


def queue_when_due(
    session: Session, due_at: dict[int, datetime], settings: Settings, enqueue: Enqueue,
    holder: str | None = None,
) -> None:  # fmt: skip
    """Queue each row for the moment it is due (rows due together share a task), noted
    queued by `holder`. A wait longer than BROKER_ETA_MAX_SECONDS is covered in hops: a task
    that comes early queues its rows again for their time, so no broker holds an ETA task
    for hours."""
    now = utcnow()
    for due, ids in due_groups(due_at, settings.retry_group_seconds):
        wait = min(max(0.0, (due - now).total_seconds()), settings.broker_eta_max_seconds)
        for start in range(0, len(ids), settings.delivery_chunk_size):
            hand_over(session, ids[start : start + settings.delivery_chunk_size], enqueue, wait,
                      holder=holder)  # fmt: skip


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


def note_queued(
    session: Session, delivery_ids: Sequence[int], run_at: datetime | None,
    holder: str | None = None,
) -> None:  # fmt: skip
    """Remember that a task for these deliveries is with the broker, due at `run_at` (None:
    no task is: the broker did not take it), handed to it by the worker process `holder`
    (None: not a worker, or no task)."""
    session.execute(
        update(DELIVERIES)
        .where(Delivery.id.in_(delivery_ids))
        .values(queued_at=run_at, queued_by=holder if run_at is not None else None)
    )


def queueing_holders(session: Session) -> list[str]:
    """The worker processes whose note is on rows still waiting for a sender. One probe of
    ix_deliveries_queued_by per holder (the next name after the last): every takeover check
    asks, and a fan-out's backlog of a hundred thousand rows waiting in the broker is not
    read each time (as a DISTINCT over them would). The index's own predicate, as text: a
    plan PostgreSQL prepares for reuse still proves it (a bound status would not)."""
    found: list[str] = []
    while True:
        after = DELIVERIES.c.queued_by > found[-1] if found else DELIVERIES.c.queued_by.is_not(None)
        holder = session.scalar(
            select(func.min(DELIVERIES.c.queued_by)).where(text(QUEUED_BY_WAITING), after)
        )
        if holder is None:
            return found
        found.append(holder)


def take_noted(
    session: Session, holders: Sequence[str], taker: str | None
) -> list[tuple[int, str, datetime]]:
    """(id, channel, due time) of the rows that `holders` (dead worker processes) noted
    queued and no sender has claimed: perhaps never handed to the broker (killed between the
    commit and the enqueue), so the caller queues them again (`queue_again`). They are noted
    as the `taker`'s meanwhile: one taker gets them, and if it dies before queueing them they
    are taken again. A copy the broker did hold finds them claimed or sent: a no-op."""
    if not holders:
        return []
    rows = session.execute(
        update(DELIVERIES)
        .where(text(QUEUED_BY_WAITING), DELIVERIES.c.queued_by.in_(list(holders)))
        .values(queued_by=taker)
        .returning(DELIVERIES.c.id, DELIVERIES.c.channel, DELIVERIES.c.next_attempt_at)
    )
    return sorted((row[0], row[1], row[2]) for row in rows)


def queue_again(
    session: Session, rows: Sequence[tuple[int, str, datetime]], settings: Settings,
    enqueue: Enqueue, now: datetime, holder: str | None = None,
) -> None:  # fmt: skip
    """Rows (id, channel, due time) whose task may be lost, queued again: due ones at once,
    per channel at its pace (push first); the others for their time."""
    due: dict[str, list[int]] = {}
    later: dict[int, datetime] = {}
    for delivery_id, channel, due_at in rows:
        if due_at <= now:
            due.setdefault(channel, []).append(delivery_id)
        else:
            later[delivery_id] = due_at
    rates = send_rates(settings)
    for channel in in_queue_order(due):
        queue_in_chunks(session, due[channel], settings, enqueue, rates.get(channel, 0.0), holder)
    queue_when_due(session, later, settings, enqueue, holder)
