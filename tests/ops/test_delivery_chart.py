"""The ops dashboard's chart: deliveries sent and failed per hour, counted in the database
(both kinds) and laid out for an SVG (the page itself: tests/web/test_ops_dashboard.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from notifier.delivery.planning import Notice, plan_chunks
from notifier.models import Delivery, DeliveryOutcome, DeliveryStatus
from notifier.ops.delivery_chart import HourCount, chart, hourly_outcomes
from tests import factories

NOW = datetime(2026, 12, 4, 14, 20, tzinfo=UTC)


def outcomes(session, *outcomes: tuple[DeliveryStatus, datetime]) -> None:
    """One delivery per (status, when it was sent or last tried)."""
    for n in range(len(outcomes)):
        factories.subscriber(session, f"r{n}@example.com", "news")
    story = factories.article(session, "news")
    list(plan_chunks(session, Notice.article(story.id), ["email"], NOW - timedelta(days=2), 100))
    rows = session.scalars(select(Delivery).order_by(Delivery.id)).all()
    for row, (status, at) in zip(rows, outcomes, strict=True):
        row.status, row.next_attempt_at = status, at
        row.sent_at = at if status is DeliveryStatus.SENT else None
        if status in (DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.SKIPPED):
            row.outcome = DeliveryOutcome(status.value)
    session.commit()


def test_counts_per_hour_in_the_hour_each_was_sent_or_last_tried(session):
    outcomes(
        session,
        (DeliveryStatus.SENT, NOW - timedelta(minutes=5)),  # this hour, under way
        (DeliveryStatus.SENT, NOW - timedelta(minutes=15)),
        (DeliveryStatus.FAILED, NOW - timedelta(minutes=19)),
        (DeliveryStatus.SENT, NOW - timedelta(hours=1)),  # 13:20: the 13:00 hour
        (DeliveryStatus.FAILED, NOW - timedelta(hours=3, minutes=30)),  # 10:50
        (DeliveryStatus.SENT, NOW - timedelta(hours=5)),  # before the window
        (DeliveryStatus.PENDING, NOW - timedelta(minutes=1)),  # not an outcome yet
        (DeliveryStatus.SKIPPED, NOW - timedelta(minutes=1)),
    )
    hours = hourly_outcomes(session, NOW, 4)
    assert [h.start.hour for h in hours] == [11, 12, 13, 14]
    assert [(h.sent, h.failed) for h in hours] == [(0, 0), (0, 0), (1, 0), (2, 1)]
    earliest = hourly_outcomes(session, NOW, 5)[0]  # 10:00, the hour of the 10:50 failure
    assert (earliest.start.hour, earliest.sent, earliest.failed) == (10, 0, 1)


def test_the_chart_scales_to_a_round_top_and_labels_hours_in_the_site_zone():
    start = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
    hours = [HourCount(start + timedelta(hours=i), i * 10, i) for i in range(6)]
    drawn = chart(hours, ZoneInfo("Asia/Baku"))
    assert drawn.top_value == 100  # the busiest hour has 55: the axis goes to 100
    assert [value for _, value in drawn.gridlines] == [0, 50, 100]
    last = drawn.bars[-1]
    span = drawn.plot_bottom - drawn.plot_top
    assert round(last.sent_height / span, 2) == 0.5 and round(last.failed_height / span, 2) == 0.05
    assert last.failed_y + last.failed_height == last.sent_y, "failed stacks on sent"
    assert [b.label for b in drawn.bars][:2] == ["13:00", "14:00"]  # UTC+4
    assert (drawn.sent, drawn.failed, drawn.busiest) == (150, 15, hours[-1])
    assert chart([HourCount(start, 0, 0)], ZoneInfo("UTC")).busiest is None


def test_every_gridline_is_a_whole_number_of_deliveries():
    start = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
    for busiest in (0, 1, 3, 5, 7, 11, 39, 41, 999, 1001):
        drawn = chart([HourCount(start, busiest, 0)], ZoneInfo("UTC"))
        assert drawn.top_value >= max(busiest, 1)
        assert all(value * 2 == drawn.top_value * f for (_, value), f in
                   zip(drawn.gridlines, (0, 1, 2), strict=True))  # fmt: skip
