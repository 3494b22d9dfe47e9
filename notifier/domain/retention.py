"""Remove old finished deliveries a small batch at a time, counting each batch into the
summary table in the same transaction, so no figure is lost or counted twice.

Which rows go: planned before the cutoff, final (sent, failed, skipped; gone is a failed
one), of a notice whose planning finished (an article or alert with `fanned_out_at` set; a
digest is planned in one statement). A notice whose fan-out is unfinished keeps its rows: a
fan-out run again adds only the rows missing, and that must not include removed ones. Kept
too: email refused or returned for good (outcome gone or bounced), the evidence
EMAIL_BOUNCE_LIMIT counts over a reader's whole life (notifier.domain.deliveries).

A batch is one DELETE … RETURNING of at most `size` rows, walked in (created_at, id) order
from where the previous batch stopped; on PostgreSQL its rows are locked with SKIP LOCKED, so
it never waits for a worker or the bounce processor, and a fan-out (which only inserts)
never waits for it. The caller commits after each batch.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, delete, exists, literal, not_, or_, select, text, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from notifier.models import (
    Alert,
    Article,
    Delivery,
    DeliveryOutcome,
    DeliveryStatus,
    DeliverySummary,
)

DELIVERIES = Delivery.__table__
SUMMARIES = DeliverySummary.__table__
FINAL = (DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.SKIPPED)
BOUNCE_EVIDENCE = (DeliveryOutcome.GONE, DeliveryOutcome.BOUNCED)
SUMMARY_KEY = ("notice_kind", "notice_id", "channel", "status", "outcome", "reason",
               "created_hour", "ended_hour")  # fmt: skip
REASON_MAX = 200


@dataclass(frozen=True)
class Position:
    """Where the walk stopped: the last removed row's (created_at, id)."""

    created_at: datetime
    id: int


@dataclass(frozen=True)
class Batch:
    removed: int
    position: Position | None  # None: nothing removed


def messages_going_out(session: Session, now: datetime, since: datetime) -> bool:
    """Whether deliveries that became due after `since` are waiting or being sent now (a
    fan-out, a digest morning); rows due for longer are stuck, the sweeper's, not news going
    out. One probe of the due index, its predicate written out so any plan can use it."""
    going = (
        select(literal(1))
        .select_from(Delivery)
        .where(text("status IN ('pending', 'sending')"),
               Delivery.next_attempt_at > since, Delivery.next_attempt_at <= now)
        .limit(1)
    )  # fmt: skip
    return session.scalar(going) is not None


def removable(cutoff: datetime):
    """The condition a delivery row must meet to be removed (see the module docstring)."""
    article_unfinished = exists().where(
        Article.id == Delivery.article_id, Article.fanned_out_at.is_(None)
    )
    alert_unfinished = exists().where(Alert.id == Delivery.alert_id, Alert.fanned_out_at.is_(None))
    return and_(
        Delivery.created_at < cutoff,
        Delivery.status.in_(FINAL),
        not_(and_(Delivery.channel == "email", Delivery.outcome.in_(BOUNCE_EVIDENCE))),
        or_(Delivery.article_id.is_(None), not_(article_unfinished)),
        or_(Delivery.alert_id.is_(None), not_(alert_unfinished)),
    )


def remove_batch(
    session: Session, cutoff: datetime, size: int, after: Position | None = None
) -> Batch:
    """Remove up to `size` removable rows after `after`, oldest first, and add their counts to
    the summary table. Fewer than `size` removed: nothing older is left (but rows locked by
    someone else at that moment, left for the next run)."""
    chosen = select(Delivery.id).where(removable(cutoff))
    if after is not None:
        chosen = chosen.where(
            tuple_(Delivery.created_at, Delivery.id) > tuple_(after.created_at, after.id)
        )
    chosen = (
        chosen.order_by(Delivery.created_at, Delivery.id)
        .limit(size)
        .with_for_update(skip_locked=True)
    )
    c = DELIVERIES.c
    removed = session.execute(
        delete(DELIVERIES)
        .where(c.id.in_(chosen.scalar_subquery()))
        .returning(
            c.id,
            c.created_at,
            c.article_id,
            c.alert_id,
            c.digest_id,
            c.channel,
            c.status,
            c.outcome,
            c.last_error,
            c.sent_at,
            c.next_attempt_at,
        )
    ).all()
    if not removed:
        return Batch(0, None)
    add_to_summary(session, _counted(removed))
    last = max(removed, key=lambda row: (row.created_at, row.id))
    return Batch(len(removed), Position(last.created_at, last.id))


def _hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def _counted(rows) -> Counter[tuple]:
    """Summary key -> how many of these rows it counts."""
    counts: Counter[tuple] = Counter()
    for row in rows:
        if row.article_id is not None:
            kind, notice_id = "article", row.article_id
        elif row.alert_id is not None:
            kind, notice_id = "alert", row.alert_id
        else:
            kind, notice_id = "digest", row.digest_id
        status = DeliveryStatus(row.status)
        outcome = row.outcome if row.outcome is not None else status.value
        reason = (row.last_error or "")[:REASON_MAX] if status is DeliveryStatus.SKIPPED else ""
        ended = row.sent_at if row.sent_at is not None else row.next_attempt_at
        counts[(kind, notice_id, row.channel, status.value, str(outcome), reason,
                _hour(row.created_at), _hour(ended))] += 1  # fmt: skip
    return counts


def add_to_summary(session: Session, counts: Counter[tuple]) -> None:
    """Add counts to the summary rows of their keys (one upsert for the whole batch)."""
    if not counts:
        return
    dialect = session.get_bind().dialect.name
    module = postgresql if dialect == "postgresql" else sqlite
    values = [{**dict(zip(SUMMARY_KEY, key, strict=True)), "count": n}
              for key, n in counts.items()]  # fmt: skip
    statement = module.insert(SUMMARIES).values(values)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=list(SUMMARY_KEY),
            set_={"count": SUMMARIES.c.count + statement.excluded.count},
        )
    )
