"""Who each channel reaches: the recipient rows, their category links and the state that
counts as active. Planning, the send-time check and an alert's audience size all read it."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Table

from notifier.models import (
    PushStatus,
    PushSubscription,
    Subscriber,
    SubscriberStatus,
    push_subscription_categories,
    subscriber_categories,
)


@dataclass(frozen=True)
class Audience:
    """Who a channel delivers to: recipient rows, their category links, the active state."""

    membership: Table
    recipient_column: str  # column of `membership` and of deliveries naming the recipient
    recipient: type
    active: object


AUDIENCES = {
    "email": Audience(subscriber_categories, "subscriber_id", Subscriber, SubscriberStatus.ACTIVE),
    "push": Audience(
        push_subscription_categories, "push_subscription_id", PushSubscription, PushStatus.ACTIVE
    ),
}
