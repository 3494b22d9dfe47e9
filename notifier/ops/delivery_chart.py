"""Deliveries sent and failed per hour over the last hours, for the ops dashboard's chart:
counted in one statement, and laid out as an SVG the page draws without any script.

A sent delivery counts in the hour of its `sent_at`. A failed one counts in the hour of its
last attempt: `next_attempt_at` is when that attempt became due (a final failure does not move
it), so it is at most the time a worker took to pick it up off.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from notifier.models import Delivery, DeliveryStatus, DeliverySummary

HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class HourCount:
    start: datetime  # the hour, UTC
    sent: int
    failed: int


def hourly_outcomes(session: Session, now: datetime, hours: int) -> list[HourCount]:
    """`hours` whole hours ending with the current (partial) one, oldest first."""
    end = now.replace(minute=0, second=0, microsecond=0) + HOUR
    starts = [end - HOUR * (hours - i) for i in range(hours)]
    sent = and_(Delivery.status == DeliveryStatus.SENT, Delivery.sent_at >= starts[0])
    failed = and_(Delivery.status == DeliveryStatus.FAILED, Delivery.next_attempt_at >= starts[0])
    columns = []
    for start in starts:
        stop = start + HOUR
        columns.append(
            func.sum(
                case((and_(sent, Delivery.sent_at >= start, Delivery.sent_at < stop), 1), else_=0)
            )
        )
        columns.append(func.sum(case(
            (and_(failed, Delivery.next_attempt_at >= start, Delivery.next_attempt_at < stop), 1),
            else_=0,
        )))  # fmt: skip
    row = session.execute(select(*columns).where(sent | failed)).one()
    removed = _removed_per_hour(session, starts[0])
    return [
        HourCount(
            start,
            int(row[2 * i] or 0) + removed.get((start, DeliveryStatus.SENT.value), 0),
            int(row[2 * i + 1] or 0) + removed.get((start, DeliveryStatus.FAILED.value), 0),
        )
        for i, start in enumerate(starts)
    ]


def _removed_per_hour(session: Session, since: datetime) -> dict[tuple[datetime, str], int]:
    """(hour, sent|failed) -> deliveries retention removed that ended in that hour: counted by
    the same hour (sent_at, else the last attempt) as the ledger's rows above."""
    rows = session.execute(
        select(DeliverySummary.ended_hour, DeliverySummary.status, func.sum(DeliverySummary.count))
        .where(
            DeliverySummary.ended_hour >= since,
            DeliverySummary.status.in_([DeliveryStatus.SENT.value, DeliveryStatus.FAILED.value]),
        )
        .group_by(DeliverySummary.ended_hour, DeliverySummary.status)
    )
    return {(hour, status): int(count) for hour, status, count in rows}


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    sent_y: float
    sent_height: float
    failed_y: float
    failed_height: float
    label: str  # "14:00", the hour in the site's zone
    tick: bool  # its label is written under the axis
    count: HourCount


@dataclass(frozen=True)
class Chart:
    """Geometry in the SVG's own units (viewBox 0 0 width height)."""

    width: int
    height: int
    plot_top: float
    plot_bottom: float
    plot_left: float
    top_value: int  # the value of the highest gridline
    bars: list[Bar]
    sent: int
    failed: int
    busiest: HourCount | None

    @property
    def gridlines(self) -> list[tuple[float, int]]:
        """(y, value) at 0, half and the top."""
        span = self.plot_bottom - self.plot_top
        return [(self.plot_bottom - span * f, round(self.top_value * f)) for f in (0, 0.5, 1)]


def _round_up(value: int) -> int:
    """The next 2, 4 or 10 times a power of ten: an axis read at a glance, whose middle
    gridline is a whole number too."""
    step = 1
    while True:
        for factor in (2, 4, 10):
            if value <= factor * step:
                return factor * step
        step *= 10


def chart(hours: list[HourCount], zone: ZoneInfo, width: int = 480, height: int = 180) -> Chart:
    top, bottom, left, right = 12.0, height - 24.0, 40.0, 8.0
    top_value = _round_up(max([h.sent + h.failed for h in hours] + [2]))
    slot = (width - left - right) / max(len(hours), 1)
    scale = (bottom - top) / top_value
    every = max(1, len(hours) // 6)  # about six labels along the axis
    bars = []
    for i, hour in enumerate(hours):
        sent_height, failed_height = hour.sent * scale, hour.failed * scale
        sent_y = bottom - sent_height
        bars.append(Bar(
            x=left + i * slot + slot * 0.15, width=slot * 0.7,
            sent_y=sent_y, sent_height=sent_height,
            failed_y=sent_y - failed_height, failed_height=failed_height,
            label=hour.start.astimezone(zone).strftime("%H:%M"),
            tick=(len(hours) - 1 - i) % every == 0, count=hour,
        ))  # fmt: skip
    busiest = max(hours, key=lambda h: h.sent + h.failed, default=None)
    return Chart(
        width, height, top, bottom, left, top_value, bars,
        sent=sum(h.sent for h in hours), failed=sum(h.failed for h in hours),
        busiest=busiest if busiest and busiest.sent + busiest.failed else None,
    )  # fmt: skip
