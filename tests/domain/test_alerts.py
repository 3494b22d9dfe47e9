"""Breaking alerts: who they reach, once; idempotency; cancel, stop and progress."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from notifier.delivery.routes import AUDIENCES
from notifier.domain.alerts import (
    AlertError,
    alert_progress,
    audience_size,
    cancel_alert,
    create_alert,
    finish_if_done,
    release_due_alerts,
    stop_alert,
    validate_alert,
)
from notifier.models import AlertStatus, Delivery, DeliveryStatus, SubscriberStatus
from tests import factories
from tests.support.queue import alert_fanned_out

SITE = "https://aze.media/"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def draft(session, **fields):
    data = {"title": "Ceasefire signed", "body": "Details soon.", "channels": ["email", "push"],
            "categories": ["defense"], **fields}  # fmt: skip
    return validate_alert(session, data, SITE, NOW)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"title": ""}, "headline"),
        ({"title": "x" * 201}, "longer than 200"),
        ({"body": "x" * 601}, "longer than 600"),
        ({"channels": []}, "email, browser push or both"),
        ({"channels": ["sms"]}, "email"),
        ({"categories": []}, "at least one category"),
        ({"categories": ["sports"]}, "Unknown category"),
        ({"categories": [1, None]}, "list of slugs"),
        ({"categories": "defense"}, "list of slugs"),
        ({"channels": [{}]}, "email"),
        ({"url": "javascript:alert(1)"}, "web address starting with http"),
        ({"image_url": "ftp://x/y.jpg"}, "web address starting with http"),
        ({"send_at": "tomorrow"}, "ISO 8601"),
        ({"send_at": "2026-12-01T09:00:00"}, "time zone"),
        ({"send_at": "2020-01-01T09:00:00Z"}, "in the past"),
    ],
)
def test_bad_alerts_are_refused_with_a_sentence(session, fields, message):
    with pytest.raises(AlertError, match=message):
        draft(session, **fields)


def test_defaults_and_scheduling(session):
    plain = draft(session, title="Ceasefire\r\nBcc: x@y")
    assert plain.title == "Ceasefire Bcc: x@y" and plain.url == SITE and plain.send_at is None
    later = draft(session, send_at="2026-11-25T18:00:00+04:00", all=True)
    assert later.send_at == datetime(2026, 11, 25, 14, 0, tzinfo=UTC) and later.target_all


def test_reaches_every_active_reader_of_the_target_once_per_channel(
    session, push_service, settings
):
    factories.subscriber(session, "defense@example.com", "defense", "news")
    factories.subscriber(session, "news@example.com", "news")
    factories.subscriber(session, "pending@example.com", "defense", status=SubscriberStatus.PENDING)
    factories.push_subscription(session, push_service.new_subscription(), "defense", "karabakh")
    targeted = draft(session, categories=["defense", "karabakh"])
    assert audience_size(session, targeted, AUDIENCES) == {"email": 1, "push": 1}
    everyone = draft(session, all=True)
    assert audience_size(session, everyone, AUDIENCES) == {"email": 2, "push": 1}

    alert, _ = create_alert(session, targeted, NOW)
    assert alert_fanned_out(session, settings, alert.id)[0] == {"email": 1, "push": 1}
    assert alert_fanned_out(session, settings, alert.id)[0] == {}, "a second run adds nothing"
    assert alert.status is AlertStatus.SENDING
    email_only, _ = create_alert(session, draft(session, all=True, channels=["email"]), NOW)
    assert alert_fanned_out(session, settings, email_only.id)[0] == {"email": 2}


def test_the_same_idempotency_key_makes_one_alert(session):
    first, created = create_alert(session, draft(session), NOW, idempotency_key="k1")
    again, created_again = create_alert(session, draft(session, title="Other"), NOW,
                                        idempotency_key="k1")  # fmt: skip
    assert created and not created_again and again.id == first.id


def test_scheduled_alert_is_released_at_its_time_and_can_be_cancelled_before(session, settings):
    at = NOW + timedelta(hours=1)
    alert, _ = create_alert(session, draft(session, send_at=at.isoformat()), NOW)
    assert alert.status is AlertStatus.SCHEDULED
    assert release_due_alerts(session, NOW, 10) == []
    assert release_due_alerts(session, at, 10) == [alert.id]
    assert alert.status is AlertStatus.QUEUED
    other, _ = create_alert(session, draft(session, send_at=at.isoformat()), NOW)
    cancel_alert(session, other.id, NOW)
    assert other.status is AlertStatus.CANCELLED
    assert alert_fanned_out(session, settings, other.id)[0] == {}


def test_a_queued_alert_whose_task_was_lost_is_released_again(session):
    alert, _ = create_alert(session, draft(session), NOW)
    assert release_due_alerts(session, NOW + timedelta(seconds=5), 10) == []
    assert release_due_alerts(session, NOW + timedelta(seconds=11), 10) == [alert.id]


def test_stop_skips_what_is_not_sent_and_progress_counts_it(session, settings):
    for n in range(3):
        factories.subscriber(session, f"r{n}@example.com", "defense")
    alert, _ = create_alert(session, draft(session, channels=["email"]), NOW)
    alert_fanned_out(session, settings, alert.id)
    first = session.scalars(select(Delivery).order_by(Delivery.id)).first()
    first.status = DeliveryStatus.SENT
    stop_alert(session, alert.id, NOW)
    assert alert.status is AlertStatus.STOPPED
    assert alert_progress(session, alert.id)["email"] == {
        "queued": 0, "sent": 1, "failed": 0, "gone": 0, "skipped": 2,
    }  # fmt: skip
    with pytest.raises(AlertError, match="only one not yet started"):
        cancel_alert(session, alert.id, NOW)


def test_alert_is_sent_when_every_delivery_is_final(session, settings):
    factories.subscriber(session, "r@example.com", "defense")
    alert, _ = create_alert(session, draft(session, channels=["email"]), NOW)
    alert_fanned_out(session, settings, alert.id)
    assert not finish_if_done(session, alert.id, NOW)
    session.scalars(select(Delivery)).one().status = DeliveryStatus.SENT
    assert finish_if_done(session, alert.id, NOW + timedelta(seconds=2))
    assert alert.status is AlertStatus.SENT and alert.finished_at is not None


def test_an_alert_with_no_audience_is_done_at_once(session, settings):
    alert, _ = create_alert(session, draft(session, categories=["karabakh"]), NOW)
    alert_fanned_out(session, settings, alert.id)
    assert alert.status is AlertStatus.SENT
