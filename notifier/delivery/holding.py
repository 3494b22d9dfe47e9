"""Deliveries held back on purpose (a browser's quiet hours): the row goes back to pending,
due at the time it may go, and the claim that held it counts no attempt.

A held push is an ordinary due-later row, like a retry: the batch queues it for its time
(notifier.delivery.queueing.queue_when_due, in hops of BROKER_ETA_MAX_SECONDS), the sweeper
re-queues it if that task is lost, and the claim sends it once. Nothing lives in a worker's
memory, so a restart loses nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache

from sqlalchemy import bindparam, update
from sqlalchemy.orm import Session

from notifier.delivery.claims import fence_values, held_by_bound
from notifier.models import Delivery, DeliveryStatus
from notifier.sql import dialect_of

DELIVERIES = Delivery.__table__


@dataclass(frozen=True)
class Held:
    """A delivery that must not go before `until`; `reason` is kept on the row meanwhile."""

    delivery_id: int
    until: datetime
    reason: str


def mark_held(
    session: Session, delivery_ids: Sequence[int], until: datetime, reason: str,
    token: str | None = None,
) -> list[int]:  # fmt: skip
    """Pending again, due at `until`, the attempt the claim counted given back. Returns the
    rows recorded (a row taken over meanwhile is its new holder's)."""
    if not delivery_ids:
        return []
    statement = _mark_held(dialect_of(session), token is not None)
    values = {**fence_values(delivery_ids, token), "until": until, "reason": reason}
    return sorted(session.scalars(statement, values).all())


@cache
def _mark_held(dialect: str, fenced: bool):
    return (
        update(DELIVERIES)
        .where(*held_by_bound(dialect, fenced))
        .values(
            status=DeliveryStatus.PENDING,
            outcome=None,
            next_attempt_at=bindparam("until"),
            held_until=bindparam("until"),
            attempts=DELIVERIES.c.attempts - 1,
            lease_until=None,
            last_error=bindparam("reason"),
            claimed_by=None,
            claim_token=None,
        )
        .returning(DELIVERIES.c.id)
    )
