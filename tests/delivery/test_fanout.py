"""The streaming fan-out engine: chunked planning, bulk recording, resumable alerts."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import event, func, select

from notifier.delivery.compose import Composer
from notifier.delivery.dispatch import send_deliveries
from notifier.delivery.outlets import outlets
from notifier.delivery.planning import Notice, alert_notice, plan_chunks
from notifier.domain.alerts import (
    finish_if_done,
    finish_planning,
    start_alert,
    unplanned_alert_ids,
)
from notifier.domain.deliveries import overdue_delivery_ids
from notifier.messages import SendResult
from notifier.models import AlertStatus, Delivery, DeliveryStatus, SubscriberStatus
from notifier.timeutil import utcnow
from tests import factories

FOLLOWS = [("news",), ("economy",), ("news", "economy"), ("culture",), ("economy", "culture")]


def _readers(session, count: int) -> set[int]:
    """`count` readers over several categories; returns the ids a News+Economy story reaches."""
    reached = set()
    for n in range(count):
        slugs = FOLLOWS[n % len(FOLLOWS)]
        reader = factories.subscriber(session, f"r{n}@example.com", *slugs)
        if {"news", "economy"} & set(slugs):
            reached.add(reader.id)
    session.commit()
    return reached


def _planned_story(session, readers: int) -> list[int]:
    """A News+Economy story planned for email to `readers` readers; its delivery ids."""
    _readers(session, readers)
    story = factories.article(session, "news", "economy")
    session.commit()
    chunks = plan_chunks(session, Notice.article(story.id), ["email"], utcnow(), 500)
    ids = [i for chunk in chunks for i in chunk.delivery_ids]
    session.commit()
    return ids


@contextmanager
def statements(session):
    seen: list[str] = []

    def record(_conn, _cursor, statement, *_args):
        seen.append(" ".join(statement.split()))

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_the_audience_is_planned_a_chunk_at_a_time_once_each(session):
    reached = _readers(session, 23)
    story = factories.article(session, "news", "economy")
    session.commit()
    notice, queued_at = Notice.article(story.id), utcnow()

    chunks = list(plan_chunks(session, notice, ["email"], utcnow(), 4, lambda: queued_at))
    session.commit()

    assert all(0 < len(chunk.delivery_ids) <= 4 for chunk in chunks)
    recipients = session.scalars(select(Delivery.subscriber_id).order_by(Delivery.id)).all()
    assert sorted(recipients) == sorted(reached), "each reader once, however many matches"
    assert [i for c in chunks for i in c.delivery_ids] == sorted(
        session.scalars(select(Delivery.id))
    )
    assert session.scalar(select(func.count()).where(Delivery.queued_at != queued_at)) == 0

    again = list(plan_chunks(session, notice, ["email"], utcnow(), 4))
    assert sum(c.planned for c in again) == 0, "a second run inserts nothing"
    assert [c.delivery_ids for c in again] == [c.delivery_ids for c in chunks], (
        "and hands back the same unsent deliveries to queue"
    )


def test_planning_costs_two_statements_per_chunk_however_big_the_chunk(session):
    _readers(session, 40)
    story = factories.article(session, "news", "economy")
    session.commit()
    reached, notice = 32, Notice.article(story.id)  # 8 of the 40 follow only Culture

    with statements(session) as small:
        chunks = list(plan_chunks(session, notice, ["email"], utcnow(), 8))
    session.rollback()
    with statements(session) as large:
        list(plan_chunks(session, notice, ["email"], utcnow(), 100))
    session.commit()

    assert len(chunks) == reached // 8
    # the story's categories once; per chunk its bounds and one INSERT … SELECT; "no more"
    assert len(small) == 1 + 2 * len(chunks) + 1
    assert len(large) == 1 + 2 + 1
    inserts = [s for s in small if s.startswith("INSERT INTO deliveries")]
    assert len(inserts) == len(chunks), "one INSERT per chunk, never one per reader"


def test_the_first_chunk_of_each_channel_is_small_so_its_messages_leave_first(
    session, push_service
):
    """DELIVERY_FIRST_CHUNK_SIZE: the first chunk of each channel holds fewer readers than
    the rest, and the channels still take turns (the first push with the first email)."""
    for n in range(9):
        factories.subscriber(session, f"r{n}@example.com", "news")
        factories.push_subscription(session, push_service.new_subscription(), "news")
    story = factories.article(session, "news")
    session.commit()

    chunks = list(plan_chunks(session, Notice.article(story.id), ["email", "push"], utcnow(),
                              4, first_chunk_size=2))  # fmt: skip
    session.commit()

    sizes = [(chunk.channel, len(chunk.delivery_ids)) for chunk in chunks]
    assert sizes == [("email", 2), ("push", 2), ("email", 4), ("push", 4), ("email", 3),
                     ("push", 3)]  # fmt: skip
    assert session.scalar(select(func.count()).select_from(Delivery)) == 18


def test_a_stretch_of_readers_who_left_does_not_end_the_planning(session):
    """Chunks are cut among the category's followers, then the ones who left are dropped:
    a whole chunk of them is passed over, and the readers after it are still planned."""
    gone = SubscriberStatus.UNSUBSCRIBED
    left = [
        factories.subscriber(session, f"gone{n}@example.com", "news", status=gone) for n in range(6)
    ]
    staying = [factories.subscriber(session, f"r{n}@example.com", "news") for n in range(3)]
    story = factories.article(session, "news")
    session.commit()

    chunks = list(plan_chunks(session, Notice.article(story.id), ["email"], utcnow(), 2))
    session.commit()

    assert max(reader.id for reader in left) < min(reader.id for reader in staying)
    assert [len(chunk.delivery_ids) for chunk in chunks] == [2, 1]
    planned = set(session.scalars(select(Delivery.subscriber_id)))
    assert planned == {reader.id for reader in staying}


def test_channels_take_turns_so_the_first_push_is_planned_with_the_first_email(
    session, push_service
):
    for n in range(6):
        factories.subscriber(session, f"r{n}@example.com", "news")
        factories.push_subscription(session, push_service.new_subscription(), "news")
    story = factories.article(session, "news")
    session.commit()

    chunks = plan_chunks(session, Notice.article(story.id), ["email", "push"], utcnow(), 2)
    order = [chunk.channel for chunk in chunks]

    assert order == ["email", "push"] * 3


def test_outcomes_are_written_a_group_at_a_time(session, settings, smtp):
    ids = _planned_story(session, readers=75)  # 60 reached
    batched = settings.with_overrides(delivery_record_batch=25)

    with statements(session) as seen:
        report = send_deliveries(session, ids, outlets(batched, Composer(batched)), batched)

    assert report.sent == 60 and len(smtp.handler.received) == 60
    updates = [s for s in seen if s.startswith("UPDATE deliveries")]
    assert len(updates) == 1 + 3, "one claim, then one statement per 25 outcomes"
    assert len(seen) < 15, f"a batch of 60 costs a handful of statements, not 60: {seen}"


class BreaksMidway:
    """A channel whose connection drops for good after a few messages went out."""

    name = "email"

    def __init__(self, sent_before_failing: int) -> None:
        self.left = sent_before_failing

    def open(self):
        return self

    def send_many(self, messages):
        for key, _message in messages:
            if not self.left:
                raise RuntimeError("the worker is going down")
            self.left -= 1
            yield key, SendResult.sent()

    def close(self) -> None:
        pass


def test_what_was_sent_before_a_crash_is_recorded_and_the_rest_stays_claimed(session, settings):
    ids = _planned_story(session, readers=15)  # 12 reached
    batched = settings.with_overrides(delivery_record_batch=5)
    email = replace(outlets(batched, Composer(batched))["email"], channel=BreaksMidway(7))

    with pytest.raises(RuntimeError):
        send_deliveries(session, ids, {"email": email}, batched)

    session.expire_all()
    states = dict(
        session.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all()
    )
    assert states == {DeliveryStatus.SENT: 7, DeliveryStatus.SENDING: 5}, (
        "the 7 sent are recorded (5 at the group, 2 on the way out); the rest wait for the lease"
    )


def test_an_alert_is_not_done_before_its_last_chunk_is_planned(session, settings):
    for n in range(4):
        factories.subscriber(session, f"r{n}@example.com", "defense")
    alert = factories.alert(session, settings.site_url, "defense")
    session.commit()
    alert = start_alert(session, alert.id, utcnow())
    session.commit()
    first = next(plan_chunks(session, alert_notice(alert), ["email"], utcnow(), 2))
    session.commit()
    for delivery in session.scalars(select(Delivery).where(Delivery.id.in_(first.delivery_ids))):
        delivery.status = DeliveryStatus.SENT
    session.commit()

    assert not finish_if_done(session, alert.id, utcnow()), "two readers are not planned yet"
    later = utcnow().replace(year=utcnow().year + 1)
    assert unplanned_alert_ids(session, later, 60) == [alert.id], "the sweeper resumes it"
    assert start_alert(session, alert.id, utcnow()) is alert, "and a second planner may go on"

    list(plan_chunks(session, alert_notice(alert), ["email"], utcnow(), 2))
    session.execute(Delivery.__table__.update().values(status=DeliveryStatus.SENT.value))
    finish_planning(session, alert, utcnow())
    session.commit()

    assert alert.status == AlertStatus.SENT
    assert unplanned_alert_ids(session, later, 60) == []


def test_each_chunk_is_noted_queued_when_it_is_queued_not_when_planning_began(session):
    """A million-reader fan-out plans for minutes: its last chunks were not queued at the
    start, and the sweeper must not take them for lost."""
    _readers(session, 10)  # 8 reached
    story = factories.article(session, "news", "economy")
    session.commit()
    start = utcnow()
    ticks = iter(range(100))

    def clock():
        return start + timedelta(minutes=next(ticks))

    chunks = list(plan_chunks(session, Notice.article(story.id), ["email"], start, 3, clock))
    session.commit()

    queued = [
        session.scalars(select(Delivery.queued_at).where(Delivery.id.in_(c.delivery_ids))).all()
        for c in chunks
    ]
    assert [set(q) for q in queued] == [{start + timedelta(minutes=m)} for m in range(3)]


def test_a_paced_channel_notes_each_chunk_queued_for_when_its_turn_comes(session):
    """EMAIL_RATE_PER_SECOND=2 and chunks of 4: the third chunk cannot start before 4 s, so
    the sweeper (which takes work the broker held for SWEEP_REQUEUE_AFTER_SECONDS as lost)
    does not queue a paced fan-out again while it waits its turn."""
    _readers(session, 23)
    story = factories.article(session, "news", "economy")
    session.commit()
    start = utcnow()
    chunks = list(plan_chunks(session, Notice.article(story.id), ["email"], start, 4,
                              lambda: start, rates={"email": 2.0}))  # fmt: skip
    session.commit()
    noted = [
        session.scalar(select(func.min(Delivery.queued_at)).where(Delivery.id.in_(c.delivery_ids)))
        for c in chunks
    ]
    assert noted == [start + timedelta(seconds=2 * n) for n in range(len(chunks))]
    last = chunks[-1].delivery_ids
    seen_by_sweeper = overdue_delivery_ids(session, start + timedelta(seconds=10), 0, 5, 100)
    assert not set(last) & set(seen_by_sweeper), "its turn has not come yet"
    assert set(chunks[0].delivery_ids) <= set(seen_by_sweeper)
