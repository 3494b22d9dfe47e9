"""The daily push cap: at most PUSH_DAILY_CAP pushes per browser per local day (its own time
zone). Article pushes beyond it are skipped; breaking alerts count toward it but are never
skipped because of it.

The count is the ledger itself: a push counts once its delivery row carries the browser's
local day (`deliveries.push_day`), set before it is sent, and stops counting if it then fails
or is skipped. The send path (notifier.delivery.push_cap) and the editor's alert preview
count with these functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from notifier.models import Delivery, DeliveryStatus
from notifier.sql import among

# A push counted and not (yet) failed or skipped: sent, being sent, or due again.
COUNTING = (DeliveryStatus.PENDING, DeliveryStatus.SENDING, DeliveryStatus.SENT)


def local_day(zone_name: str, now: datetime) -> str:
    """The browser's calendar day at `now`, as stored in push_day (YYYY-MM-DD)."""
    return now.astimezone(ZoneInfo(zone_name)).date().isoformat()


def pushes_counted(session: Session, days: Mapping[int, str]) -> dict[int, int]:
    """push subscription id -> pushes counted on its local day (`days`: id -> that day)."""
    if not days:
        return {}
    rows = Delivery.__table__.c
    counted = session.execute(
        select(rows.push_subscription_id, rows.push_day, func.count())
        .where(
            among(session, rows.push_subscription_id, days),
            rows.push_day.in_(sorted(set(days.values()))),
            rows.status.in_(COUNTING),
        )
        .group_by(rows.push_subscription_id, rows.push_day)
    ).all()
    totals = dict.fromkeys(days, 0)
    for subscription_id, day, count in counted:
        if days[subscription_id] == day:
            totals[subscription_id] = count
    return totals


def under_cap(counted: int, cap: int) -> bool:
    """Another article push fits in the day (cap 0: no cap)."""
    return cap <= 0 or counted < cap
