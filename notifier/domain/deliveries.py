"""Delivery state the rules and the sweeper read: what is owed and not sent, what looks lost,
which articles were never fanned out, how often an address bounced.

A delivery row exists before any message is sent, keyed by (notice, recipient, channel), so
planning twice adds nothing (notifier.delivery.planning). Sending, claiming and recording
live in notifier.delivery; this module only reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from notifier.models import Article, Delivery, DeliveryOutcome, DeliveryStatus, Subscriber
from notifier.sql import among

# Bulk statements go to the table, not the ORM entity: no per-row session bookkeeping.
DELIVERIES = Delivery.__table__


def count_hard_bounces(session: Session, subscriber_id: int) -> int:
    """Emails to this reader refused for good: at send time (SMTP 5xx for the address) or
    returned later (a DSN 5.x.x), since ops last lifted a suppression of the address."""
    forgiven = session.scalar(
        select(Subscriber.bounces_forgiven_at).where(Subscriber.id == subscriber_id)
    )
    statement = select(func.count()).where(
        Delivery.subscriber_id == subscriber_id,
        Delivery.outcome.in_((DeliveryOutcome.GONE, DeliveryOutcome.BOUNCED)),
    )
    if forgiven is not None:
        statement = statement.where(Delivery.created_at > forgiven)
    return session.execute(statement).scalar_one()


def unsent_deliveries(
    session: Session, due_after: datetime | None = None
) -> list[tuple[int, str, datetime]]:
    """(id, channel, due time) of every planned delivery not sent and not claimed; with
    `due_after`, only those due later than that (retries and held pushes, not the rows of
    a fan-out under way, which can be a million)."""
    statement = (
        select(DELIVERIES.c.id, DELIVERIES.c.channel, DELIVERIES.c.next_attempt_at)
        .where(DELIVERIES.c.status == DeliveryStatus.PENDING)
        .order_by(DELIVERIES.c.id)
    )
    if due_after is not None:
        statement = statement.where(DELIVERIES.c.next_attempt_at > due_after)
    return [tuple(row) for row in session.execute(statement).all()]


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


def alert_ids_of(session: Session, delivery_ids: Sequence[int]) -> list[int]:
    """The alerts a batch's deliveries belong to. The ids are bound as one array (among):
    an IN list of a chunk's 500 ids cost about 3 ms of worker CPU per chunk to build."""
    return list(
        session.scalars(
            select(DELIVERIES.c.alert_id)
            .where(among(session, DELIVERIES.c.id, delivery_ids),
                   DELIVERIES.c.alert_id.is_not(None))
            .distinct()
        )
    )  # fmt: skip
