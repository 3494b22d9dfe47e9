"""How and when each reader gets email: per category instant, daily or weekly digest, or off;
the reader's timezone and digest time; and the digest schedules that follow from them.

A schedule row exists per reader and digest cadence in use; its `next_at` is the next local
digest time, in UTC, so the beat finds due digests with one indexed comparison.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from notifier.domain.subscriptions import SubscriptionError, confirmed_subscriber, unsubscribe
from notifier.models import (
    Cadence,
    Category,
    DigestSchedule,
    Subscriber,
    SubscriberStatus,
    subscriber_categories,
)

DIGEST_CADENCES = (Cadence.DAILY, Cadence.WEEKLY)
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def timezone_names() -> list[str]:
    return sorted(available_timezones())


def valid_timezone(name: object) -> str:
    """An IANA zone name, or a SubscriptionError saying what is wrong."""
    if not isinstance(name, str) or not name.strip():
        raise SubscriptionError("Please choose a time zone.")
    try:
        ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise SubscriptionError(f"{name.strip()[:64]!r} is not a time zone we know.") from None
    return name.strip()


class DigestTime(Protocol):
    """Where and when a reader takes digests (a Subscriber, or the planner's plain values)."""

    @property
    def timezone(self) -> str: ...

    @property
    def digest_hour(self) -> int: ...

    @property
    def digest_weekday(self) -> int: ...


def next_digest_at(cadence: Cadence, subscriber: DigestTime, after: datetime) -> datetime:
    """The first local digest time (hour, and weekday for weekly) strictly after `after`,
    in UTC. Wall-clock in the reader's zone, so it follows their summer time."""
    zone = ZoneInfo(subscriber.timezone)
    local = after.astimezone(zone)
    day = local.date()
    for _ in range(9):
        candidate = datetime.combine(day, time(subscriber.digest_hour), zone).astimezone(UTC)
        weekday_ok = cadence is Cadence.DAILY or day.weekday() == subscriber.digest_weekday
        if weekday_ok and candidate > after:
            return candidate
        day += timedelta(days=1)
    raise AssertionError("a digest time exists within nine days")  # pragma: no cover


def email_cadences(session: Session, subscriber_id: int) -> dict[int, Cadence]:
    """category id -> how it reaches this reader by email (missing: off)."""
    rows = session.execute(
        select(subscriber_categories.c.category_id, subscriber_categories.c.cadence).where(
            subscriber_categories.c.subscriber_id == subscriber_id
        )
    )
    return {category_id: Cadence(cadence) for category_id, cadence in rows}


def set_email_cadences(
    session: Session, subscriber_id: int, choices: Mapping[str, str], now: datetime
) -> Subscriber:
    """Apply the preferences grid: category slug -> instant, daily, weekly or off. All off
    means unsubscribed, as unticking every category did."""
    subscriber = confirmed_subscriber(session, subscriber_id)
    known = {c.slug: c.id for c in session.scalars(select(Category))}
    wanted: dict[int, Cadence] = {}
    for slug, choice in choices.items():
        if slug not in known:
            raise SubscriptionError(f"There is no category {slug[:200]!r}.")
        if choice == "off":
            continue
        try:
            wanted[known[slug]] = Cadence(choice)
        except ValueError:
            raise SubscriptionError(f"{choice[:20]!r} is not a choice for {slug}.") from None
    if not wanted:
        return unsubscribe(session, subscriber_id, None, now, reason="unsubscribed on preferences")
    session.execute(
        delete(subscriber_categories).where(subscriber_categories.c.subscriber_id == subscriber_id)
    )
    session.execute(insert(subscriber_categories), [
        {"subscriber_id": subscriber_id, "category_id": category_id, "cadence": cadence.value}
        for category_id, cadence in wanted.items()
    ])  # fmt: skip
    session.expire(subscriber, ["categories"])
    if subscriber.status != SubscriberStatus.ACTIVE:
        subscriber.status = SubscriberStatus.ACTIVE
        subscriber.status_reason = "resubscribed on preferences page"
        subscriber.status_changed_at = now
    sync_digest_schedules(session, subscriber, now)
    return subscriber


def set_digest_time(
    session: Session, subscriber_id: int, timezone: object, hour: object, weekday: object,
    now: datetime,
) -> Subscriber:  # fmt: skip
    """The reader's zone and digest hour / weekday; the next digests move accordingly."""
    subscriber = confirmed_subscriber(session, subscriber_id)
    subscriber.timezone = valid_timezone(timezone)
    subscriber.digest_hour = _whole(hour, 0, 23, "The digest hour")
    subscriber.digest_weekday = _whole(weekday, 0, 6, "The digest weekday")
    sync_digest_schedules(session, subscriber, now, reschedule=True)
    return subscriber


def _whole(value: object, low: int, high: int, what: str) -> int:
    try:
        number = int(str(value))
    except ValueError:
        raise SubscriptionError(f"{what} must be a whole number.") from None
    if not low <= number <= high:
        raise SubscriptionError(f"{what} must be between {low} and {high}.")
    return number


def sync_digest_schedules(
    session: Session, subscriber: Subscriber, now: datetime, reschedule: bool = False
) -> None:
    """One schedule per digest cadence the reader uses, none for the others. A new schedule
    counts articles from now on (earlier ones were sent instantly or not wanted)."""
    in_use = set(email_cadences(session, subscriber.id).values()) & set(DIGEST_CADENCES)
    existing = {
        row.cadence: row
        for row in session.scalars(
            select(DigestSchedule).where(DigestSchedule.subscriber_id == subscriber.id)
        )
    }
    for cadence, row in existing.items():
        if cadence not in in_use:
            session.delete(row)
        elif reschedule:
            row.next_at = next_digest_at(Cadence(cadence), subscriber, now)
    for cadence in in_use - set(existing):
        session.add(DigestSchedule(subscriber_id=subscriber.id, cadence=cadence.value,
                                   next_at=next_digest_at(cadence, subscriber, now),
                                   since=now))  # fmt: skip
    session.flush()
