"""A break from email: a confirmed reader stops all email for a while, without unsubscribing.

The pause is a time, not a state: planning and the send-time check compare it with the clock
(see `Audience.receiving` and `Audience.paused`), so email starts again by itself when it
ends, with nothing to run at that moment.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from notifier.models import Subscriber, SubscriberStatus
from notifier.tokens import TokenError


class PauseError(ValueError):
    """The pause cannot apply; the message is a sentence fit to show the reader."""


def paused_until(subscriber: Subscriber, now: datetime) -> datetime | None:
    """When this reader's email starts again, if it is paused at `now`."""
    until = subscriber.paused_until
    return until if until is not None and until > now else None


def pause_email(session: Session, subscriber_id: int, now: datetime, days: int) -> Subscriber:
    """No email to this reader for `days` from now (a later pause replaces an earlier one)."""
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None or subscriber.confirmed_at is None:
        raise TokenError("This link is not valid.")
    if subscriber.status != SubscriberStatus.ACTIVE:
        raise PauseError("You get no email from us now, so there is nothing to pause.")
    subscriber.paused_until = now + timedelta(days=days)
    return subscriber


def resume_email(session: Session, subscriber_id: int) -> Subscriber:
    """End a pause now: the next article goes to the reader again."""
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None or subscriber.confirmed_at is None:
        raise TokenError("This link is not valid.")
    subscriber.paused_until = None
    return subscriber
