"""One click from a digest: "switch to instant" or "switch to weekly" (daily, from a weekly
digest) moves the categories the reader takes in that digest to the new cadence.

Only the categories of the digest the reader still takes at the digest's cadence move: a
category they changed since, or one that rode along with a stale article, stays as it is,
so a second click (or an old digest's link) changes nothing more.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from notifier.domain.cadence import sync_digest_schedules
from notifier.domain.subscriptions import SubscriptionError, confirmed_subscriber
from notifier.models import Cadence, Category, Digest, SubscriberStatus, subscriber_categories


class DigestGone(LookupError):
    """The digest the link names is no longer kept (or was never this reader's)."""


@dataclass(frozen=True)
class SwitchPlan:
    """What a click would do: these categories, now at `current`, go to `target`."""

    current: str
    target: str
    categories: tuple[Category, ...]


def plan_switch(session: Session, subscriber_id: int, digest_id: int, target: str) -> SwitchPlan:
    """What switching this reader's digest to `target` changes (nothing, once done)."""
    subscriber = confirmed_subscriber(session, subscriber_id)
    digest = session.get(Digest, digest_id)
    if digest is None or digest.subscriber_id != subscriber.id:
        raise DigestGone(digest_id)
    if target == digest.cadence or target not in {c.value for c in Cadence}:
        raise SubscriptionError(f"A {digest.cadence} digest cannot switch to {target[:20]!r}.")
    if subscriber.status is not SubscriberStatus.ACTIVE:
        raise SubscriptionError("You are unsubscribed: subscribe again to get email from us.")
    rows = subscriber_categories.c
    moving = select(rows.category_id).where(
        rows.subscriber_id == subscriber.id,
        rows.cadence == digest.cadence,
        rows.category_id.in_(json.loads(digest.category_ids)),
    )
    categories = session.scalars(
        select(Category).where(Category.id.in_(moving)).order_by(Category.name)
    )
    return SwitchPlan(digest.cadence, target, tuple(categories))


def switch_cadence(
    session: Session, subscriber_id: int, digest_id: int, target: str, now: datetime
) -> SwitchPlan:
    """Apply the click: the plan's categories go to `target` and the digest schedules follow
    (a new weekly schedule counts from now). Returns what was changed."""
    plan = plan_switch(session, subscriber_id, digest_id, target)
    if plan.categories:
        rows = subscriber_categories.c
        session.execute(
            update(subscriber_categories)
            .where(rows.subscriber_id == subscriber_id, rows.cadence == plan.current,
                   rows.category_id.in_([c.id for c in plan.categories]))
            .values(cadence=target)
        )  # fmt: skip
        subscriber = confirmed_subscriber(session, subscriber_id)
        session.expire(subscriber, ["categories"])
        sync_digest_schedules(session, subscriber, now)
    return plan
