"""Tasks the broker did not take (down, unreachable, or the publish failed), kept in the
database with their cause until a worker hands them over.

Whoever sends a task and meets a broker that does not answer keeps it here instead of losing
it (a chunk of deliveries, a batch's retries, a fan-out, a feed poll); each worker's main
process looks every BROKER_CHECK_SECONDS and hands what waits to the broker as soon as it
answers again (notifier.recovery). Without this only the sweeper found such work, minutes
later. A task handed over twice (its first publish reached the broker after all) is
harmless: the claims send each delivery once, and planning twice adds nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence, Sized
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from notifier.models import UnsentTask

SEND_DELIVERIES = "notifier.tasks.send_deliveries"
WINDOW = timedelta(days=1)


class NotHandedOver(Exception):
    """The broker did not take a task; the message says why (raised by an Enqueue)."""


def keep_unsent(
    session: Session,
    task_name: str,
    args: Sequence[object],
    now: datetime,
    cause: str,
    run_at: datetime | None = None,
    turn_at: datetime | None = None,
) -> UnsentTask:
    """Keep a task the broker refused, to run at `run_at` (now by default); the caller
    commits. A chunk of deliveries names its rows: `args` is `[delivery_ids]`."""
    run_at = run_at or now
    ids = args[0] if task_name == SEND_DELIVERIES and args else ()
    deliveries = len(ids) if isinstance(ids, Sized) else 0
    row = UnsentTask(task_name=task_name, arguments=json.dumps(list(args)), deliveries=deliveries,
                     cause=cause[:500], kept_at=now, run_at=run_at,
                     turn_at=max(turn_at or run_at, run_at))  # fmt: skip
    session.add(row)
    return row


def next_unsent(session: Session) -> UnsentTask | None:
    """The oldest task still waiting, locked for this transaction: two workers checking at
    once hand over different tasks."""
    return session.scalars(
        select(UnsentTask)
        .where(UnsentTask.handed_over_at.is_(None))
        .order_by(UnsentTask.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    ).first()


def task_arguments(row: UnsentTask) -> list:
    return json.loads(row.arguments)


def delivery_ids_of(row: UnsentTask) -> list[int]:
    """The rows of a kept chunk; none for other tasks."""
    return list(task_arguments(row)[0]) if row.task_name == SEND_DELIVERIES else []


@dataclass(frozen=True)
class UnsentSummary:
    waiting: int  # tasks the broker has not taken yet
    waiting_deliveries: int  # deliveries in the chunks among them
    waiting_since: datetime | None  # the oldest of them was kept then
    kept_last_day: dict[str, int]  # tasks the broker refused in the last day, by short name
    last_cause: str | None  # why, the last time

    @property
    def kept(self) -> int:
        return sum(self.kept_last_day.values())


def unsent_summary(session: Session, now: datetime) -> UnsentSummary:
    waiting, deliveries, since = session.execute(
        select(func.count(), func.coalesce(func.sum(UnsentTask.deliveries), 0),
               func.min(UnsentTask.kept_at))
        .where(UnsentTask.handed_over_at.is_(None))
    ).one()  # fmt: skip
    recent = UnsentTask.kept_at >= now - WINDOW
    rows = session.execute(
        select(UnsentTask.task_name, func.count()).where(recent).group_by(UnsentTask.task_name)
    )
    kept = {name.rpartition(".")[2]: count for name, count in rows}
    cause = session.scalar(
        select(UnsentTask.cause).where(recent).order_by(UnsentTask.id.desc()).limit(1)
    )
    return UnsentSummary(waiting, int(deliveries), since, kept, cause)


def forget_unsent(session: Session, before: datetime) -> None:
    """Tasks handed over long ago (those still waiting stay, however old)."""
    handed_over = UnsentTask.handed_over_at.is_not(None)
    session.execute(delete(UnsentTask).where(UnsentTask.kept_at < before, handed_over))
