"""Addresses we stopped mailing, as data: why, on which evidence, since when; and lifting a
suppression, which forgives the bounces before it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from notifier.models import Subscriber, SubscriberStatus, Suppression, SuppressionReason

_STATUS = {
    SuppressionReason.HARD_BOUNCES: SubscriberStatus.BOUNCED,
    SuppressionReason.SOFT_BOUNCES: SubscriberStatus.BOUNCED,
    SuppressionReason.COMPLAINT: SubscriberStatus.COMPLAINED,
}


class SuppressionError(ValueError):
    """The suppression cannot be lifted; the message says why."""


def suppress(
    session: Session,
    subscriber: Subscriber,
    reason: SuppressionReason,
    source: str,
    detail: str,
    now: datetime,
    report_id: int | None = None,
) -> bool:
    """Stop all email to the reader and record why. A complaint also drops every category
    (the reader asked for nothing more) and applies even to a reader already suppressed for
    bounces; True when the reader's state changed."""
    complaint = reason == SuppressionReason.COMPLAINT
    if complaint:
        subscriber.categories = []
    elif subscriber.status != SubscriberStatus.ACTIVE:
        return False
    if subscriber.status == _STATUS[reason]:
        return False
    subscriber.status = _STATUS[reason]
    subscriber.status_reason = detail
    subscriber.status_changed_at = now
    subscriber.confirm_links_after = now
    session.add(
        Suppression(email=subscriber.email, subscriber_id=subscriber.id, reason=reason,
                    source=source, detail=detail, created_at=now, report_id=report_id)
    )  # fmt: skip
    return True


def lift(session: Session, suppression_id: int, by: str, now: datetime) -> Suppression:
    """Ops takes an address off the list: its reader gets email again (for the categories it
    still has) and the bounces so far no longer count."""
    suppression = session.get(Suppression, suppression_id)
    if suppression is None:
        raise SuppressionError("There is no such suppression.")
    if suppression.lifted_at is not None:
        raise SuppressionError("This suppression was already lifted.")
    suppression.lifted_at, suppression.lifted_by = now, by
    subscriber = session.get(Subscriber, suppression.subscriber_id or 0)
    if subscriber is not None and subscriber.status == _STATUS[suppression.reason]:
        subscriber.status = (
            SubscriberStatus.ACTIVE if subscriber.categories else SubscriberStatus.UNSUBSCRIBED
        )
        subscriber.status_reason = f"suppression lifted by {by}"
        subscriber.status_changed_at = now
        subscriber.bounces_forgiven_at = now
    return suppression


@dataclass(frozen=True)
class SuppressionQuery:
    search: str = ""  # part of the address, the reason or the detail
    include_lifted: bool = False
    limit: int = 200


def list_suppressions(session: Session, query: SuppressionQuery) -> list[Suppression]:
    statement = select(Suppression).order_by(Suppression.created_at.desc(), Suppression.id.desc())
    if not query.include_lifted:
        statement = statement.where(Suppression.lifted_at.is_(None))
    if query.search:
        pattern = f"%{query.search.strip().lower()}%"
        statement = statement.where(
            or_(
                Suppression.email.ilike(pattern),
                Suppression.detail.ilike(pattern),
                Suppression.source.ilike(pattern),
            )
        )
    return list(session.scalars(statement.limit(query.limit)))
