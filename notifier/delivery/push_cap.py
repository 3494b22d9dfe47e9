"""PUSH_DAILY_CAP at send time: each push about to go is counted on its browser's local day,
or, an article push past the cap, skipped with the reason. Breaking alerts count but always
go.

Why the ledger and a row lock, not an atomic counter: the count is the delivery rows that
carry the day (`deliveries.push_day`), written and committed before anything is sent, while
the browsers' push_subscriptions rows are locked (SELECT … FOR NO KEY UPDATE, in id order so
two gates never deadlock; NO KEY, so a fan-out inserting deliveries that reference those
rows, which takes KEY SHARE, is not held up). Two workers gating pushes for one browser at
once take turns: the second waits for the first's commit, then counts its rows, so they
cannot both pass the last slot. A push counted once keeps its day when it is retried, taken
over or held again, so nothing is counted twice; one that then fails or is skipped stops
counting by its status, with no counter to give back. A Redis INCR would be atomic too, but
would have to be undone by hand on every such path and expire per time zone, and could not
be checked against what was actually sent. SQLite (development) has no row locks: there the
cap is exact only with one sending process.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from notifier.config import Settings
from notifier.delivery.addressing import Addressee, Unwanted
from notifier.delivery.holding import Held
from notifier.domain.push_cap import local_day, pushes_counted, under_cap
from notifier.models import Alert, Delivery, PushSubscription
from notifier.sql import among

# The skip reason, as recorded, shown on /ops/ and counted in /metrics (notifier.ops.skips).
DAILY_CAP = "daily cap"

DELIVERIES = Delivery.__table__


Entry = Addressee | Unwanted | Held


def gate_daily_cap(
    session: Session, entries: Sequence[Entry], now: datetime, settings: Settings
) -> list[Entry]:
    """The entries as they go: each addressed push counted on its browser's day (committed
    here, before it is sent), or an article push past the cap turned into Unwanted."""
    pushes = [e for e in entries if isinstance(e, Addressee)]
    uncounted = _not_yet_counted(pushes)
    if not uncounted:
        return list(entries)
    browsers = sorted({e.recipient.id for e in pushes if e.delivery_id in uncounted})
    session.execute(
        select(PushSubscription.id)
        .where(among(session, PushSubscription.id, browsers))
        .order_by(PushSubscription.id)
        .with_for_update(key_share=True)
    ).all()  # held until the commit below: one worker at a time counts for these browsers
    by_zone: dict[str, str] = {}  # browsers share a few time zones
    days = {}
    for push in pushes:
        zone = push.recipient.timezone
        day = by_zone.get(zone)
        if day is None:
            day = by_zone[zone] = local_day(zone, now)
        days[push.recipient.id] = day
    counted = pushes_counted(session, {b: days[b] for b in browsers})
    counting: dict[str, list[int]] = defaultdict(list)
    gated: list[Entry] = []
    for entry in entries:
        if not isinstance(entry, Addressee) or entry.delivery_id not in uncounted:
            gated.append(entry)
            continue
        browser = entry.recipient.id
        if isinstance(entry.notice, Alert) or under_cap(counted[browser], settings.push_daily_cap):
            counted[browser] += 1
            counting[days[browser]].append(entry.delivery_id)
            gated.append(entry)
        else:
            gated.append(Unwanted(entry.delivery_id, DAILY_CAP))
    for day, ids in counting.items():
        session.execute(update(DELIVERIES).where(among(session, DELIVERIES.c.id, ids))
                        .values(push_day=day))  # fmt: skip
    session.commit()
    return gated


def _not_yet_counted(pushes: list[Addressee]) -> set[int]:
    """The pushes not yet counted on a day (as the claim read them)."""
    return {push.delivery_id for push in pushes if push.delivery.push_day is None}
