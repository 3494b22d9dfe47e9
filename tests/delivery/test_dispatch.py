"""Fan-out and sending against real SMTP on PostgreSQL and SQLite: once, and only once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from notifier.delivery.compose import Composer
from notifier.delivery.dispatch import deliver, send_deliveries
from notifier.delivery.fanout import fan_out_article
from notifier.delivery.outlets import outlets
from notifier.delivery.queueing import note_queued
from notifier.domain.deliveries import overdue_delivery_ids, unplanned_article_ids
from notifier.domain.subscriptions import unsubscribe
from notifier.models import Alert, AlertStatus, Delivery, DeliveryStatus, SubscriberStatus
from notifier.timeutil import utcnow
from tests import factories
from tests.support.claims import claimed_ids
from tests.support.queue import RecordingQueue, alert_fanned_out, article_fanned_out


@pytest.fixture
def send(session, settings):
    bound = outlets(settings, Composer(settings))

    def run(ids, at=None):
        clock = (lambda: at) if at else utcnow
        return send_deliveries(session, ids, bound, settings, now=clock)

    return run


def _fan_out(session, settings, article_id) -> list[int]:
    """Plan and queue the article as its fan-out task does; the ids it queued."""
    return article_fanned_out(session, settings, article_id)[1]


def _deliveries(session):
    session.expire_all()
    return list(session.scalars(select(Delivery).order_by(Delivery.id)))


def test_one_email_per_reader_however_many_categories_match(session, smtp, send, settings):
    factories.subscriber(session, "both@example.com", "news", "economy")
    factories.subscriber(session, "one@example.com", "economy")
    factories.subscriber(session, "other@example.com", "culture")
    factories.subscriber(session, "pending@example.com", "news", status=SubscriberStatus.PENDING)
    story = factories.article(session, "news", "economy", title="Manat holds steady")
    session.commit()

    planned, ids = article_fanned_out(session, settings, story.id)
    assert planned["email"] == 2
    assert article_fanned_out(session, settings, story.id)[0] == {}  # a second run: planned
    report = send(ids)

    assert report.sent == 2
    recipients = sorted(r for m in smtp.handler.received for r in m.rcpt_tos)
    assert recipients == ["both@example.com", "one@example.com"]
    both = smtp.handler.to("both@example.com")[0]
    assert "Economy, News" in both.get_body(("plain",)).get_content()


def test_a_redelivered_batch_sends_nothing_twice(session, smtp, send, settings):
    for n in range(5):
        factories.subscriber(session, f"r{n}@example.com", "news")
    story = factories.article(session, "news")
    ids = _fan_out(session, settings, story.id)

    assert send(ids).sent == 5
    assert send(ids).sent == 0
    assert len(smtp.handler.received) == 5
    assert {(d.status, d.attempts) for d in _deliveries(session)} == {(DeliveryStatus.SENT, 1)}


def test_a_claimed_delivery_is_not_claimed_again_until_its_lease_expires(session, settings):
    factories.subscriber(session, "r@example.com", "news")
    story = factories.article(session, "news")
    ids, now = _fan_out(session, settings, story.id), utcnow()

    assert claimed_ids(session, ids, now, lease_seconds=60) == ids
    assert claimed_ids(session, ids, now + timedelta(seconds=59), lease_seconds=60) == []
    assert overdue_delivery_ids(session, now + timedelta(seconds=30), 0, 0, 100) == []
    assert overdue_delivery_ids(session, now + timedelta(seconds=61), 0, 0, 100) == ids
    assert claimed_ids(session, ids, now + timedelta(seconds=61), lease_seconds=60) == ids


def test_temporary_smtp_failure_is_retried_with_backoff_then_sent(session, smtp, send, settings):
    factories.subscriber(session, "r@example.com", "news")
    story = factories.article(session, "news")
    ids = _fan_out(session, settings, story.id)
    smtp.handler.temporary_failures = 1

    report = send(ids)
    [delivery] = _deliveries(session)
    assert report.sent == 0 and list(report.retry_in) == ids
    assert delivery.status is DeliveryStatus.PENDING and delivery.attempts == 1
    assert "451" in delivery.last_error
    assert delivery.next_attempt_at > utcnow()
    assert send(ids).sent == 0, "not due yet: a retry must wait for its backoff"

    assert send(ids, at=delivery.next_attempt_at + timedelta(seconds=1)).sent == 1
    [delivery] = _deliveries(session)
    assert (delivery.status, delivery.attempts, delivery.last_error) == (
        DeliveryStatus.SENT, 2, None,
    )  # fmt: skip
    assert len(smtp.handler.received) == 1


def test_permanent_refusal_is_recorded_and_never_retried(session, smtp, send, settings):
    factories.subscriber(session, "gone@example.com", "news")
    factories.subscriber(session, "fine@example.com", "news")
    story = factories.article(session, "news")
    ids = _fan_out(session, settings, story.id)
    smtp.handler.refuse["gone@example.com"] = "550 5.1.1 No such user"

    report = send(ids)
    assert (report.sent, report.failed, report.retry_in) == (1, 1, {})
    later = utcnow() + timedelta(days=1)
    assert send(ids, at=later).sent == 0
    failed = [d for d in _deliveries(session) if d.status is DeliveryStatus.FAILED]
    assert len(failed) == 1 and "550" in failed[0].last_error and failed[0].attempts == 1
    assert overdue_delivery_ids(session, later, 0, 0, 100) == []


def test_gives_up_after_the_attempt_limit(session, smtp, send, settings):
    factories.subscriber(session, "r@example.com", "news")
    story = factories.article(session, "news")
    ids = _fan_out(session, settings, story.id)
    smtp.handler.temporary_failures = 1000
    at = utcnow()
    for _ in range(settings.delivery_max_attempts):
        send(ids, at=at)
        at += timedelta(seconds=settings.delivery_retry_max_seconds + 1)
    [delivery] = _deliveries(session)
    assert delivery.status is DeliveryStatus.FAILED
    assert delivery.last_error.startswith(f"gave up after {settings.delivery_max_attempts}")
    assert smtp.handler.received == []


def test_reader_who_left_after_planning_is_skipped(session, smtp, send, settings):
    reader = factories.subscriber(session, "r@example.com", "news")
    story = factories.article(session, "news")
    ids = _fan_out(session, settings, story.id)
    unsubscribe(session, reader.id, None, utcnow(), reason="test")
    session.commit()

    report = send(ids)
    assert (report.sent, report.skipped) == (0, 1)
    [delivery] = _deliveries(session)
    assert delivery.status is DeliveryStatus.SKIPPED and "unsubscribed" in delivery.last_error
    assert smtp.handler.received == []


def test_unreachable_smtp_server_leaves_everything_to_retry(session, settings):
    from tests.support.smtp import free_port

    for n in range(3):
        factories.subscriber(session, f"r{n}@example.com", "news")
    story = factories.article(session, "news")
    ids = _fan_out(session, settings, story.id)
    unreachable = settings.with_overrides(smtp_url=f"smtp://127.0.0.1:{free_port()}")

    bound = outlets(unreachable, Composer(unreachable))
    report = send_deliveries(session, ids, bound, unreachable)
    assert sorted(report.retry_in) == ids
    assert {d.status for d in _deliveries(session)} == {DeliveryStatus.PENDING}


def test_sweeper_finds_articles_whose_fan_out_was_lost(session, settings):
    story = factories.article(session, "news")
    factories.article(session, "news", announce=False)
    session.commit()
    later = utcnow() + timedelta(minutes=5)
    assert unplanned_article_ids(session, later, grace_seconds=60) == [story.id]
    _fan_out(session, settings, story.id)
    assert unplanned_article_ids(session, later, grace_seconds=60) == []


def test_chunks_cover_every_pending_delivery_once(session, settings):
    for n in range(7):
        factories.subscriber(session, f"r{n}@example.com", "news")
    story = factories.article(session, "news")
    queue = RecordingQueue()
    # Chunks of 3, so that 7 readers make more than one (the default is far larger).
    fan_out_article(session, story.id, settings.with_overrides(delivery_chunk_size=3), queue)
    chunks = [ids for ids, _ in queue.chunks]
    assert [len(c) for c in chunks] == [3, 3, 1]
    assert sorted(i for c in chunks for i in c) == [d.id for d in _deliveries(session)]


def test_sweeper_leaves_work_the_broker_holds_and_takes_back_work_it_lost(session, settings):
    factories.subscriber(session, "r@example.com", "news")
    story = factories.article(session, "news")
    ids = _fan_out(session, settings, story.id)
    queued = utcnow()
    note_queued(session, ids, queued)
    session.commit()
    soon, later = queued + timedelta(seconds=90), queued + timedelta(seconds=301)
    assert overdue_delivery_ids(session, soon, 60, 300, 100) == [], "still with the broker"
    assert overdue_delivery_ids(session, later, 60, 300, 100) == ids, "the broker lost it"


def test_a_delivery_failing_for_longer_than_its_max_age_is_given_up(session, smtp, send, settings):
    factories.subscriber(session, "r@example.com", "news")
    story = factories.article(session, "news")
    ids = _fan_out(session, settings, story.id)
    smtp.handler.temporary_failures = 1
    send(ids, at=utcnow() + timedelta(seconds=settings.delivery_max_age_seconds))
    [delivery] = _deliveries(session)
    assert delivery.status is DeliveryStatus.FAILED and "gave up" in delivery.last_error


def test_repeated_hard_bounces_suppress_the_address(session, smtp, send, settings):
    reader = factories.subscriber(session, "gone@example.com", "news")
    smtp.handler.refuse["gone@example.com"] = "550 5.1.1 No such user"
    for n in range(settings.email_bounce_limit):
        story = factories.article(session, "news")
        send(_fan_out(session, settings, story.id))
        session.expire_all()
        expected = (SubscriberStatus.BOUNCED if n + 1 == settings.email_bounce_limit
                    else SubscriberStatus.ACTIVE)  # fmt: skip
        assert session.get(type(reader), reader.id).status is expected
    story = factories.article(session, "news")
    assert article_fanned_out(session, settings, story.id)[0]["email"] == 0


def test_retrying_a_failed_delivery_after_its_cause_is_fixed_delivers_it_once(
    session, smtp, send, settings
):
    from notifier.ops.failures import retry_failed

    factories.subscriber(session, "r@example.com", "news")
    story = factories.article(session, "news")
    ids = _fan_out(session, settings, story.id)
    smtp.handler.refuse["r@example.com"] = "554 5.7.1 Relay access denied"  # our relay's fault
    send(ids)
    assert [d.status for d in _deliveries(session)] == [DeliveryStatus.FAILED]

    del smtp.handler.refuse["r@example.com"]  # the operator fixed the relay
    assert retry_failed(session, ids, utcnow()) == ids
    session.commit()
    assert send(ids).sent == 1
    assert retry_failed(session, ids, utcnow()) == [], "a sent delivery is not retried"
    assert send(ids).sent == 0
    assert len(smtp.handler.received) == 1


def test_each_final_delivery_records_its_outcome_as_data(session, smtp, send, settings):
    from notifier.models import DeliveryOutcome

    fine = factories.subscriber(session, "fine@example.com", "news")
    gone = factories.subscriber(session, "gone@example.com", "news")
    left = factories.subscriber(session, "left@example.com", "news")
    story = factories.article(session, "news")
    ids = _fan_out(session, settings, story.id)
    unsubscribe(session, left.id, None, utcnow(), reason="test")
    session.commit()
    smtp.handler.refuse["gone@example.com"] = "550 5.1.1 No such user"

    send(ids)
    outcomes = {d.subscriber_id: d.outcome for d in _deliveries(session)}
    assert outcomes == {
        fine.id: DeliveryOutcome.SENT,
        gone.id: DeliveryOutcome.GONE,
        left.id: DeliveryOutcome.SKIPPED,
    }


def test_a_batch_run_again_after_its_messages_went_finishes_their_alert(session, smtp, settings):
    """A batch sent and recorded every email of an alert, then died before finishing the
    alert. Run again, it claims nothing, and still finishes the alert: whether an alert is
    done is read from the batch's rows, the claim's or not."""
    for n in range(3):
        factories.subscriber(session, f"a{n}@example.com", "defense")
    alert = factories.alert(session, settings.site_url, "defense")
    session.commit()
    _, ids = alert_fanned_out(session, settings, alert.id)
    bound = outlets(settings, Composer(settings))
    send_deliveries(session, ids, bound, settings)  # sent and recorded; the alert not finished
    session.commit()
    assert session.get(Alert, alert.id).status == AlertStatus.SENDING
    assert len(smtp.handler.received) == 3

    report = deliver(session, ids, bound, settings, RecordingQueue())

    assert (report.sent, report.unclaimed) == (0, sorted(ids))
    assert session.get(Alert, alert.id).status == AlertStatus.SENT
    assert len(smtp.handler.received) == 3, "nothing went twice"
