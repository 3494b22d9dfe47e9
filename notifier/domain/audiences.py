"""The kinds of recipient a channel can reach: their rows, their category links and the state
that counts as active. Which channel reaches which is registered with the channel itself
(notifier.delivery.routes); planning, the send-time check and an alert's audience size read
the audience from there."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Table, and_, or_

from notifier.models import (
    Cadence,
    PushStatus,
    PushSubscription,
    Subscriber,
    SubscriberStatus,
    push_subscription_categories,
    subscriber_categories,
)


@dataclass(frozen=True)
class Audience:
    """Who a channel delivers to: recipient rows, their category links, the active state.

    Deliveries name the recipient in `recipient_column`, and each such column has its two
    partial unique indexes (notice, recipient, channel) in notifier.models: a channel that
    reaches an existing kind of recipient needs no change to the schema."""

    membership: Table
    recipient_column: str  # column of `membership` and of deliveries naming the recipient
    recipient: type[Subscriber] | type[PushSubscription]
    active: SubscriberStatus | PushStatus
    # The recipient columns sending reads (addressing, the gates, composing): a chunk loads
    # these for hundreds of readers, and each column more is converted for each of them.
    sent_columns: tuple[str, ...] = ("id", "status")
    paused_until: str | None = None  # recipient column: none goes to them before that time
    # membership column saying how a category reaches them (notifier.models.Cadence): an
    # article goes at once only where it says instant; digests carry the others.
    cadence: str | None = None

    def instantly(self) -> ColumnElement[bool] | None:
        """SQL on the membership table: the category reaches the recipient at once."""
        if self.cadence is None:
            return None
        return self.membership.c[self.cadence] == Cadence.INSTANT.value

    def receiving(self, now: datetime | ColumnElement[datetime]) -> ColumnElement[bool]:
        """SQL: the recipient is active and not paused at `now` (a time, or a bound value)."""
        active = self.recipient.status == self.active
        if self.paused_until is None:
            return active
        paused_until = getattr(self.recipient, self.paused_until)
        return and_(active, or_(paused_until.is_(None), paused_until <= now))

    def paused(self, recipient: object, now: datetime) -> datetime | None:
        """When the recipient's pause ends, if it is paused at `now` (a row or an object)."""
        until = getattr(recipient, self.paused_until, None) if self.paused_until else None
        return until if until is not None and until > now else None


SUBSCRIBERS = Audience(
    subscriber_categories,
    "subscriber_id",
    Subscriber,
    SubscriberStatus.ACTIVE,
    ("id", "status", "email", "paused_until"),
    paused_until="paused_until",
    cadence="cadence",
)  # readers who confirmed an email address
BROWSERS = Audience(
    push_subscription_categories,
    "push_subscription_id",
    PushSubscription,
    PushStatus.ACTIVE,
    ("id", "status", "endpoint", "p256dh", "auth", "timezone", "quiet_start", "quiet_end"),
)  # browsers subscribed to push
