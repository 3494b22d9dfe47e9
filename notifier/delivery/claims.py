"""Claims on deliveries: who may send a row now, for how long, and who may record it.

A worker claims rows before sending (one statement), under a lease, naming its process and
a token for this claim. Only rows still carrying the token are recorded, so a worker that
lost its rows (lease run out, or taken over because it was thought dead) changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from functools import cache

from sqlalchemy import Row, and_, bindparam, or_, select, update
from sqlalchemy.orm import Session

from notifier.models import Delivery, DeliveryOutcome, DeliveryStatus
from notifier.sql import (
    DriverStatement,
    IdArray,
    among,
    among_bound,
    dialect_of,
    unindexed,
)

DELIVERIES = Delivery.__table__


def _claimable(now):
    row = DELIVERIES.c
    status = unindexed(row.status)  # the ids find the rows (see notifier.sql.unindexed)
    return or_(
        and_(status == DeliveryStatus.PENDING, row.next_attempt_at <= now),
        and_(status == DeliveryStatus.SENDING, row.lease_until < now),
    )


# What sending reads of its own rows, returned by the claim itself: the channel that sends a
# row, whom and what it names, and what the push gates ask (held before, counted today).
SENT_DELIVERY_COLUMNS = tuple(
    DELIVERIES.c[name]
    for name in ("id", "channel", "article_id", "alert_id", "digest_id", "subscriber_id",
                 "push_subscription_id", "held_until", "push_day")
)  # fmt: skip


@cache
def _claim(dialect: str):
    """The claim, built once per dialect (see notifier.sql.among_bound)."""
    return (
        update(DELIVERIES)
        .where(among_bound(dialect, DELIVERIES.c.id), _claimable(bindparam("now")))
        .values(
            status=DeliveryStatus.SENDING,
            lease_until=bindparam("lease_until"),
            attempts=DELIVERIES.c.attempts + 1,
            claimed_by=bindparam("holder"),
            claim_token=bindparam("token"),
        )
        .returning(*SENT_DELIVERY_COLUMNS)
    )


def _claim_values(ids, now, lease_seconds, token, holder) -> dict:
    return {"ids": list(ids), "now": now, "holder": holder, "token": token,
            "lease_until": now + timedelta(seconds=lease_seconds)}  # fmt: skip


def claim_statement(
    session: Session,
    ids: Sequence[int],
    now: datetime,
    lease_seconds: int,
    token: str | None,
    holder: str | None,
):
    """The claim claim_rows runs and its values (for a look at its plan)."""
    return _claim(dialect_of(session)), _claim_values(ids, now, lease_seconds, token, holder)


def claim_rows(
    session: Session,
    ids: Sequence[int],
    now: datetime,
    lease_seconds: int,
    token: str | None = None,
    holder: str | None = None,
) -> list[Row]:
    """Take the rows that are free to send; the others are sent, or held by another worker.
    `holder` names the worker process (so its rows are taken over when it dies) and `token`
    this claim (only it may record their outcomes). Returns each claimed row's
    SENT_DELIVERY_COLUMNS as the claim left them, in id order: sending needs no other read
    of its own rows."""
    if not ids:
        return []
    values = _claim_values(ids, now, lease_seconds, token, holder)
    rows = session.execute(_claim(dialect_of(session)), values).all()
    return sorted(rows, key=lambda row: row.id)


def held_by(session: Session, ids: Sequence[int], token: str | None):
    """Rows among `ids` still held by the claim `token` (all of them when there is none),
    found by primary key whatever plan the database reuses (see notifier.sql.unindexed)."""
    where = [among(session, DELIVERIES.c.id, ids)]
    if token is not None:
        where += [DELIVERIES.c.claim_token == token, _sending()]
    return where


def _sending():
    return unindexed(DELIVERIES.c.status) == DeliveryStatus.SENDING


def held_by_bound(dialect: str, fenced: bool):
    """held_by for a statement built once: the ids as `ids`, the token as `token` (when
    `fenced`: a claim's token is known)."""
    where = [among_bound(dialect, DELIVERIES.c.id)]
    if fenced:
        where += [DELIVERIES.c.claim_token == bindparam("token"), _sending()]
    return where


def fence_values(delivery_ids: Sequence[int], token: str | None) -> dict:
    """The values held_by_bound's statement runs with."""
    values: dict = {"ids": IdArray(delivery_ids)}
    if token is not None:
        values["token"] = token
    return values


def claim_holders(session: Session) -> list[str]:
    """The worker processes holding claimed rows right now."""
    return sorted(
        session.scalars(
            select(DELIVERIES.c.claimed_by)
            .where(DELIVERIES.c.status == DeliveryStatus.SENDING)
            .where(DELIVERIES.c.claimed_by.is_not(None))
            .distinct()
        )
    )


def release_claims(session: Session, holders: Sequence[str], now: datetime) -> list[int]:
    """The claimed rows of dead worker processes become due again at once; their tokens are
    dropped, so whatever those processes still try to record changes nothing."""
    if not holders:
        return []
    released = session.scalars(
        update(DELIVERIES)
        .where(
            DELIVERIES.c.status == DeliveryStatus.SENDING,
            DELIVERIES.c.claimed_by.in_(list(holders)),
        )
        .values(
            status=DeliveryStatus.PENDING,
            lease_until=None,
            claimed_by=None,
            claim_token=None,
            next_attempt_at=now,
        )
        .returning(DELIVERIES.c.id)
    )
    return sorted(released)


def not_yet_due(session: Session, ids: Iterable[int], now: datetime) -> dict[int, datetime]:
    """Pending rows among `ids` whose time has not come (a task that arrived early, or a
    chunk handed over again): id -> when each is due, so the caller queues them for then."""
    ids = sorted(ids)
    if not ids:
        return {}
    statement = _not_yet_due(dialect_of(session))
    return dict(session.execute(statement, {"ids": ids, "now": now}).all())


@cache
def _not_yet_due(dialect: str):
    return select(DELIVERIES.c.id, DELIVERIES.c.next_attempt_at).where(
        among_bound(dialect, DELIVERIES.c.id),
        unindexed(DELIVERIES.c.status) == DeliveryStatus.PENDING,
        DELIVERIES.c.next_attempt_at > bindparam("now"),
    )


def not_yet_due_statement(session: Session, ids: Sequence[int], now: datetime):
    """The statement not_yet_due runs and its values (for a look at its plan)."""
    return _not_yet_due(dialect_of(session)), {"ids": list(ids), "now": now}


def renew_leases(
    session: Session,
    ids: Sequence[int],
    held_until: datetime,
    now: datetime,
    lease_seconds: int,
    token: str | None = None,
) -> tuple[list[int], datetime]:
    """Extend our lease on rows we still hold. A row whose lease_until (or claim token) is no
    longer ours was taken by another worker: it is not ours to send any more."""
    until = now + timedelta(seconds=lease_seconds)
    if not ids:
        return [], until
    kept = session.scalars(
        update(DELIVERIES)
        .where(
            *held_by(session, ids, token),
            _sending(),
            DELIVERIES.c.lease_until == held_until,
        )
        .values(lease_until=until)
        .returning(DELIVERIES.c.id)
    )
    return sorted(kept), until


def mark_sent(
    session: Session, delivery_ids: Sequence[int], now: datetime, token: str | None = None
) -> int:
    """Accepted by the server: one statement for a whole group of deliveries. With the
    claim's token, rows taken over meanwhile are left to their new holder. Returns the rows
    recorded."""
    statement = _mark_sent(dialect_of(session), token is not None)
    return statement.rows_changed(session, {**fence_values(delivery_ids, token), "now": now})


@cache
def _mark_sent(dialect: str, fenced: bool) -> DriverStatement:
    return DriverStatement(
        update(DELIVERIES)
        .where(*held_by_bound(dialect, fenced))
        .values(
            status=DeliveryStatus.SENT,
            outcome=DeliveryOutcome.SENT,
            sent_at=bindparam("now"),
            lease_until=None,
            last_error=None,
            claimed_by=None,
            claim_token=None,
        )
    )


def mark_skipped(
    session: Session, delivery_ids: Sequence[int], reason: str, token: str | None = None
) -> None:
    """Not to be sent any more (the reader left, the alert was stopped), with the reason."""
    statement = _mark_skipped(dialect_of(session), token is not None)
    session.execute(statement, {**fence_values(delivery_ids, token), "reason": reason})


@cache
def _mark_skipped(dialect: str, fenced: bool):
    return (
        update(DELIVERIES)
        .where(*held_by_bound(dialect, fenced))
        .values(
            status=DeliveryStatus.SKIPPED,
            outcome=DeliveryOutcome.SKIPPED,
            lease_until=None,
            last_error=bindparam("reason"),
            claimed_by=None,
            claim_token=None,
        )
    )


class Lease:
    """The rows this batch holds, renewed before they run out: a batch slower than its lease
    keeps its rows, and a row another worker took after our lease lapsed is not sent twice."""

    def __init__(self, ids: Sequence[int], claimed_at: datetime, seconds: int,
                 token: str | None = None) -> None:  # fmt: skip
        self.ids = set(ids)
        self.seconds = seconds
        self._until(claimed_at + timedelta(seconds=seconds))
        self.token = token  # the claim's fence: recording only touches rows still carrying it

    def _until(self, until: datetime) -> None:
        """The lease ends at `until`; it is renewed once two thirds of it have run (worked
        out here, not for each message asked about)."""
        self.until = until
        self.renew_at = until - timedelta(seconds=self.seconds / 3)

    def holds(self, session: Session, delivery_id: int, now: datetime) -> bool:
        if now >= self.renew_at:
            kept, until = renew_leases(session, sorted(self.ids), self.until, now,
                                       self.seconds, self.token)  # fmt: skip
            self._until(until)
            session.commit()
            self.ids = set(kept)
        return delivery_id in self.ids and now < self.until

    def release(self, delivery_id: int) -> None:
        self.ids.discard(delivery_id)
