"""What an alert's push would meet if sent now, for the editor's preview: how many browsers
get it at once, how many are in their quiet hours (held until they end, or dropped as stale
by then) and how many already reached today's push cap (an alert still goes to them, and
counts). Asked with the same rules the send path applies (notifier.domain.quiet_hours,
notifier.domain.push_cap), so the preview says what then happens.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from notifier.domain.audiences import Audience
from notifier.domain.push_cap import COUNTING, local_day
from notifier.domain.quiet_hours import quiet_hours_of, quiet_verdict
from notifier.models import Category, Delivery, PushSubscription


@dataclass(frozen=True)
class PushReach:
    now: int = 0  # get it at once
    held: int = 0  # in quiet hours: it waits for their end
    dropped: int = 0  # in quiet hours that end too late: stale by then, not sent
    capped: int = 0  # already had PUSH_DAILY_CAP pushes today (an alert still goes, and counts)


def _targeted(audience: Audience, target_all: bool, category_slugs, now: datetime) -> Select:
    """The browsers an alert to these categories (or all) reaches now: their ids."""
    browser = audience.recipient
    query = select(browser.id).where(audience.receiving(now))
    if not target_all:
        membership = audience.membership
        in_categories = select(Category.id).where(Category.slug.in_(list(category_slugs)))
        query = query.join(membership, membership.c[audience.recipient_column] == browser.id).where(
            membership.c.category_id.in_(in_categories)
        )
    return query.distinct()


def alert_push_reach(
    session: Session,
    audience: Audience,
    target_all: bool,
    category_slugs: tuple[str, ...],
    override_quiet_hours: bool,
    now: datetime,
    stale_after: timedelta,
    daily_cap: int,
) -> PushReach:
    """Counted per (time zone, quiet hours) group and per browser at its cap, in two
    statements whatever the audience's size."""
    browser = PushSubscription  # the push audience's recipients
    targeted = _targeted(audience, target_all, category_slugs, now).subquery()
    groups = session.execute(
        select(browser.timezone, browser.quiet_start, browser.quiet_end, func.count())
        .where(browser.id.in_(select(targeted.c[0])))
        .group_by(browser.timezone, browser.quiet_start, browser.quiet_end)
    ).all()
    counts = {"now": 0, "held": 0, "dropped": 0}
    for zone, start, end, count in groups:
        verdict = quiet_verdict(quiet_hours_of(start, end), zone, now, now, stale_after,
                                override=override_quiet_hours)  # fmt: skip
        key = "held" if verdict.held else "dropped" if verdict.stale else "now"
        counts[key] += count
    capped = _at_cap(session, targeted, {zone for zone, *_ in groups}, now, daily_cap)
    return PushReach(counts["now"], counts["held"], counts["dropped"], capped)


def _at_cap(session, targeted, zones, now, daily_cap) -> int:
    """Targeted browsers whose pushes counted on their local day today reach the cap."""
    if daily_cap <= 0 or not zones:
        return 0
    browser, rows = PushSubscription, Delivery.__table__.c
    today = {zone: local_day(zone, now) for zone in zones}
    per_browser = session.execute(
        select(browser.timezone, rows.push_day, func.count())
        .join(browser, browser.id == rows.push_subscription_id)
        .where(
            rows.push_subscription_id.in_(select(targeted.c[0])),
            rows.push_day.in_(sorted(set(today.values()))),
            rows.status.in_(COUNTING),
        )
        .group_by(rows.push_subscription_id, browser.timezone, rows.push_day)
    ).all()
    return sum(1 for zone, day, count in per_browser if today[zone] == day and count >= daily_cap)
