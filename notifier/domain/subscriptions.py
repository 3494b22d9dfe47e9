"""Email subscriptions: double opt-in, preferences, unsubscribe.

Every change asked for from a public form is confirmed from the address itself, so knowing
someone's address is never enough to change what they get, and answers never reveal
whether an address is known.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select
from sqlalchemy.orm import Session

from notifier.domain.categories import categories_for_slugs
from notifier.domain.limits import CATEGORY_SLUGS_MAX
from notifier.domain.suppressions import suppress
from notifier.models import Category, Subscriber, SubscriberStatus, SuppressionReason
from notifier.tokens import ConfirmRequest, ResubscribeRequest, TokenError


class SubscriptionError(ValueError):
    """Input a reader can correct; the message is a sentence fit to show them."""


@dataclass(frozen=True)
class ConfirmationToSend:
    """Send a confirmation email to this subscriber for exactly these categories."""

    subscriber_id: int
    category_ids: tuple[int, ...]


@dataclass(frozen=True)
class ManageLinkToSend:
    subscriber_id: int


NO_UTF8_LOCAL_PART = (
    "We cannot send email to an address with non-ASCII characters before the @ (our mail "
    "server does not support SMTPUTF8). Please use another address."
)


def normalize_email(raw: object) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise SubscriptionError("Please enter an email address.")
    try:
        result = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError as error:
        raise SubscriptionError(f"That email address is not valid: {error}") from None
    return result.normalized.lower()


def validate_category_slugs(session: Session, slugs: object) -> list[Category]:
    if not isinstance(slugs, list | tuple) or not all(isinstance(s, str) for s in slugs):
        raise SubscriptionError("Categories must be a list of category slugs.")
    if len(slugs) > CATEGORY_SLUGS_MAX:
        raise SubscriptionError(f"Choose at most {CATEGORY_SLUGS_MAX} categories.")
    if not slugs:
        raise SubscriptionError("Please choose at least one category.")
    try:
        return categories_for_slugs(session, slugs)
    except ValueError as error:
        raise SubscriptionError(str(error)) from None


def _cooling_down(sent_at: datetime | None, now: datetime, cooldown_seconds: int) -> bool:
    return sent_at is not None and now - sent_at < timedelta(seconds=cooldown_seconds)


def request_subscription(
    session: Session,
    email: object,
    slugs: object,
    now: datetime,
    cooldown_seconds: int,
    utf8_local_parts: bool = True,
    timezone: str | None = None,
) -> ConfirmationToSend | None:
    """Record the sign-up; say whether a confirmation email should go out now.

    The categories travel in the signed confirmation link and apply only when it is clicked.
    A confirmation sent moments ago is not sent again, so the form cannot mail-bomb anyone.
    `utf8_local_parts`: whether mail can go to a non-ASCII local part (SMTPUTF8); if not,
    such an address is refused now rather than accepted and never mailed.
    """
    address = normalize_email(email)
    if not utf8_local_parts and not address.rpartition("@")[0].isascii():
        raise SubscriptionError(NO_UTF8_LOCAL_PART)
    categories = validate_category_slugs(session, slugs)
    subscriber = session.scalar(select(Subscriber).where(Subscriber.email == address))
    if subscriber is None:
        subscriber = Subscriber(email=address, status=SubscriberStatus.PENDING, created_at=now)
        session.add(subscriber)
        session.flush()
    elif _cooling_down(subscriber.confirmation_sent_at, now, cooldown_seconds):
        return None
    if subscriber.status != SubscriberStatus.ACTIVE:
        # Nothing goes to an inactive address, so its wish can be kept as it stands.
        subscriber.categories = categories
        # The browser's zone, for digest hours; one we do not know keeps UTC rather than
        # refusing a sign-up over a hidden field (the reader can change it later).
        if timezone and _known_zone(timezone):
            subscriber.timezone = timezone
    subscriber.confirmation_sent_at = now
    return ConfirmationToSend(subscriber.id, tuple(c.id for c in categories))


def _known_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return len(name) <= 64


def confirmable_subscriber(session: Session, request: ConfirmRequest) -> Subscriber:
    """The reader a confirmation link is for, if the link still works: each link works once,
    and not after the reader unsubscribed (an old link must not sign them up again)."""
    subscriber = session.get(Subscriber, request.subscriber_id)
    if subscriber is None or not request.is_for(subscriber.email):
        raise TokenError("This confirmation link is not valid.")
    after = subscriber.confirm_links_after
    # Link timestamps have whole seconds: a link made in the second of the last use counts.
    if after is not None and request.issued_at < after.replace(microsecond=0):
        raise TokenError(
            "This confirmation link was already used, or you unsubscribed since. "
            "Subscribe again to get a new one."
        )
    return subscriber


def confirm_subscription(session: Session, request: ConfirmRequest, now: datetime) -> Subscriber:
    """Apply a confirmation link (POSTed from its page): the address is proven, the categories
    take effect, and this link and older ones stop working."""
    subscriber = confirmable_subscriber(session, request)
    categories = list(
        session.scalars(select(Category).where(Category.id.in_(request.category_ids)))
    )
    subscriber.categories = categories
    if subscriber.status != SubscriberStatus.ACTIVE:
        subscriber.status = SubscriberStatus.ACTIVE
        subscriber.status_reason = "confirmed by link"
        subscriber.status_changed_at = now
    subscriber.confirmed_at = subscriber.confirmed_at or now
    subscriber.confirm_links_after = now
    return subscriber


def update_preferences(
    session: Session, subscriber_id: int, slugs: Iterable[str], now: datetime
) -> Subscriber:
    """Set a confirmed reader's categories from the preferences page; none means unsubscribe."""
    subscriber = confirmed_subscriber(session, subscriber_id)
    slugs = list(slugs)
    if not slugs:
        return unsubscribe(session, subscriber_id, None, now, reason="unsubscribed on preferences")
    subscriber.categories = validate_category_slugs(session, slugs)
    if subscriber.status != SubscriberStatus.ACTIVE:
        subscriber.status = SubscriberStatus.ACTIVE
        subscriber.status_reason = "resubscribed on preferences page"
        subscriber.status_changed_at = now
    return subscriber


def unsubscribe(
    session: Session,
    subscriber_id: int,
    category_ids: Iterable[int] | None,
    now: datetime,
    reason: str,
) -> Subscriber:
    """Drop the given categories (None: all). With none left the reader is unsubscribed."""
    subscriber = confirmed_subscriber(session, subscriber_id)
    if category_ids is None:
        subscriber.categories = []
    else:
        dropped = set(category_ids)
        subscriber.categories = [c for c in subscriber.categories if c.id not in dropped]
    if not subscriber.categories and subscriber.status == SubscriberStatus.ACTIVE:
        subscriber.status = SubscriberStatus.UNSUBSCRIBED
        subscriber.status_reason = reason
        subscriber.status_changed_at = now
        subscriber.confirm_links_after = now
    return subscriber


def resubscribe(session: Session, request: ResubscribeRequest, now: datetime) -> Subscriber:
    """Undo an unsubscribe from the page it showed (a signed link, no form to fill): the
    categories it dropped come back. The address was proven when it was confirmed, and the
    link stops working once the reader's state changed again after it was made."""
    subscriber = confirmed_subscriber(session, request.subscriber_id)
    if subscriber.status == SubscriberStatus.BOUNCED:
        raise SubscriptionError(
            "Email to this address bounced, so we stopped sending. Subscribe again from the "
            "start page to confirm the address anew."
        )
    if subscriber.status == SubscriberStatus.COMPLAINED:
        raise SubscriptionError(
            "This address reported our email as spam, so we stopped sending. Subscribe again "
            "from the start page to confirm the address anew."
        )
    changed = subscriber.status_changed_at
    if changed is not None and request.issued_at < changed.replace(microsecond=0):
        raise TokenError(
            "Your subscription changed after this page was shown. Use the link in one of "
            "our emails, or subscribe again."
        )
    wanted = session.scalars(select(Category).where(Category.id.in_(request.category_ids)))
    have = {c.id for c in subscriber.categories}
    subscriber.categories = [*subscriber.categories, *(c for c in wanted if c.id not in have)]
    if subscriber.categories and subscriber.status != SubscriberStatus.ACTIVE:
        subscriber.status = SubscriberStatus.ACTIVE
        subscriber.status_reason = "resubscribed from the unsubscribe page"
        subscriber.status_changed_at = now
    return subscriber


def request_manage_link(
    session: Session, email: object, now: datetime, cooldown_seconds: int
) -> ManageLinkToSend | ConfirmationToSend | None:
    """A reader lost their emails: mail them a preferences link (or, if never confirmed, the
    confirmation again). Unknown addresses get nothing; the caller answers the same either way."""
    address = normalize_email(email)
    subscriber = session.scalar(select(Subscriber).where(Subscriber.email == address))
    if subscriber is None:
        return None
    if subscriber.confirmed_at is None:
        if _cooling_down(subscriber.confirmation_sent_at, now, cooldown_seconds):
            return None
        subscriber.confirmation_sent_at = now
        return ConfirmationToSend(subscriber.id, tuple(c.id for c in subscriber.categories))
    if _cooling_down(subscriber.manage_link_sent_at, now, cooldown_seconds):
        return None
    subscriber.manage_link_sent_at = now
    return ManageLinkToSend(subscriber.id)


def confirmed_subscriber(session: Session, subscriber_id: int) -> Subscriber:
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None or subscriber.confirmed_at is None:
        raise TokenError("This link is not valid.")
    return subscriber


def suppress_bounced_address(
    session: Session, subscriber_id: int, hard_bounces: int, limit: int, detail: str, now: datetime
) -> bool:
    """After `limit` hard bounces the address is suppressed: no more email goes to it."""
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None or hard_bounces < limit:
        return False
    return suppress(session, subscriber, SuppressionReason.HARD_BOUNCES, "smtp",
                    f"{hard_bounces} hard bounces, last: {detail}", now)  # fmt: skip
