"""Quiet hours: the local hours in which a browser wants no push, and what becomes of a push
that falls inside them (held until they end, or dropped when its news would be stale by
then). The send path (notifier.delivery.push_gate) and the editor's alert preview both ask
these functions, so the preview says what then happens.

Quiet hours belong to the push subscription, not the email reader: most push subscribers
never gave an address, and the browser knows its own time zone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from notifier.domain.cadence import valid_timezone
from notifier.domain.push_subscriptions import PushSubscriptionError
from notifier.domain.subscriptions import SubscriptionError
from notifier.models import PushSubscription

HOURS = range(24)


@dataclass(frozen=True)
class QuietHours:
    """From `start`:00 to `end`:00 local time; start > end spans midnight (22 -> 7)."""

    start: int
    end: int

    def covers(self, hour: int) -> bool:
        if self.start < self.end:
            return self.start <= hour < self.end
        return hour >= self.start or hour < self.end


def _hour(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value not in HOURS:
        raise PushSubscriptionError(f"Quiet hours: {name} must be a whole hour from 0 to 23.")
    return value


def parse_quiet_hours(value: object) -> QuietHours | None:
    """{"start": 22, "end": 7} (local hours, whole numbers), or None for no quiet hours;
    anything else is a PushSubscriptionError with a sentence."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise PushSubscriptionError(
            'Quiet hours must be {"start": hour, "end": hour} (0-23), or null for none.'
        )
    start, end = _hour(value.get("start"), "start"), _hour(value.get("end"), "end")
    if start == end:
        raise PushSubscriptionError(
            "Quiet hours must start and end at different hours (null turns them off)."
        )
    return QuietHours(start, end)


def browser_timezone(value: object) -> str:
    """The zone a browser reports (Intl.DateTimeFormat().resolvedOptions().timeZone)."""
    try:
        return valid_timezone(value)
    except SubscriptionError as problem:  # the same sentence, as push's error
        raise PushSubscriptionError(str(problem)) from None


def set_quiet_hours(row: PushSubscription, quiet: QuietHours | None, zone: str | None) -> None:
    """Keep a browser's quiet hours (None: none) and, when given, its time zone."""
    if zone is not None:
        row.timezone = zone
    row.quiet_start, row.quiet_end = (quiet.start, quiet.end) if quiet else (None, None)


def quiet_hours_of(start: int | None, end: int | None) -> QuietHours | None:
    """A stored pair (both or neither set) as QuietHours."""
    if start is None or end is None or start == end:
        return None
    return QuietHours(start, end)


def quiet_until(quiet: QuietHours | None, zone_name: str, now: datetime) -> datetime | None:
    """When the quiet hours `now` falls in end (UTC), or None when `now` is not in them.
    Wall-clock hours in the browser's zone: they follow its summer time."""
    if quiet is None:
        return None
    zone = ZoneInfo(zone_name)
    local = now.astimezone(zone)
    if not quiet.covers(local.hour):
        return None
    day = local.date()
    if quiet.start > quiet.end and local.hour >= quiet.start:
        day += timedelta(days=1)  # evening part of quiet hours spanning midnight
    return datetime.combine(day, time(quiet.end), zone).astimezone(UTC)


@dataclass(frozen=True)
class QuietVerdict:
    """What quiet hours do to one push now: nothing (`until` None), hold it until `until`,
    or drop it (`stale` True) because its news would be stale by then."""

    until: datetime | None = None
    stale: bool = False

    @property
    def held(self) -> bool:
        return self.until is not None and not self.stale


_GOES = QuietVerdict()  # most pushes: one shared verdict, not one made per push


def quiet_verdict(
    quiet: QuietHours | None,
    zone_name: str,
    news_at: datetime | None,
    now: datetime,
    stale_after: timedelta,
    override: bool = False,
) -> QuietVerdict:
    """The rule for one push: outside quiet hours (or an alert overriding them) it goes; in
    them it waits for their end, unless the news (`news_at`: the article's published time)
    would be older than `stale_after` by then."""
    until = None if override else quiet_until(quiet, zone_name, now)
    if until is None:
        return _GOES
    return QuietVerdict(until, stale=is_stale(news_at, until, stale_after))


def is_stale(news_at: datetime | None, at: datetime, stale_after: timedelta) -> bool:
    """News from `news_at` is stale at `at` (no time known: never stale)."""
    return news_at is not None and at - news_at > stale_after
