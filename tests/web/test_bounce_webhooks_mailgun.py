"""Mailgun's webhook end to end: a signed call in Mailgun's own shape is processed once and
tied to the email we sent; a wrong or stale signature is refused, recorded, and changes
nothing; three hard bounces suppress like returned mail does; a complaint stops everything."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest

from notifier.inbound.processing import bounce_addresses
from notifier.models import (
    BounceKind,
    BounceReport,
    DeliveryOutcome,
    SubscriberStatus,
    Suppression,
    SuppressionReason,
)
from notifier.web import create_app
from tests import factories
from tests.test_metrics import in_process
from tests.web.bounce_webhooks import count, failures, nothing_changed, sent_email

KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
URL = "/webhooks/bounces/mailgun"


@pytest.fixture
def client(settings, queue):
    # The webhook is off until its signing key is set (the default is empty: 404).
    return create_app(settings.with_overrides(mailgun_signing_key=KEY), queue).test_client()


def signed(event: dict, key: str = KEY, timestamp: float | None = None) -> bytes:
    """A call as Mailgun posts it: the event and a signature of timestamp + token."""
    stamp = str(int(timestamp if timestamp is not None else time.time()))
    token = hashlib.sha256(stamp.encode() + event["id"].encode()).hexdigest()[:50]
    signature = hmac.new(key.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    return json.dumps({"signature": {"timestamp": stamp, "token": token, "signature": signature},
                       "event-data": event}).encode()  # fmt: skip


def failed(address: str, message_id: str, severity: str = "permanent", event_id: str = "G9Bn5"):
    """A "failed" event in the shape of Mailgun's documentation (message-id without <>)."""
    return {
        "id": event_id, "event": "failed", "severity": severity, "reason": "bounce",
        "timestamp": time.time(), "log-level": "error", "recipient": address,
        "recipient-domain": address.rpartition("@")[2], "tags": [], "campaigns": [],
        "envelope": {"transport": "smtp", "sender": "news@aze.test", "targets": address,
                     "sending-ip": "209.61.154.250"},
        "message": {"headers": {"to": address, "message-id": message_id.strip("<>"),
                                "from": "Aze.Media <news@aze.test>", "subject": "A story"},
                    "attachments": [], "size": 1234},
        "delivery-status": {"attempt-no": 1, "code": 550 if severity == "permanent" else 452,
                            "enhanced-code": "5.1.1" if severity == "permanent" else "4.2.2",
                            "message": "5.1.1 The email account that you tried to reach does "
                            "not exist.", "description": "", "session-seconds": 0.1},
        "flags": {"is-routed": False, "is-authenticated": True, "is-test-mode": False},
        "user-variables": {},
    }  # fmt: skip


def post(client, body: bytes):
    return client.post(URL, data=body, content_type="application/json")


def test_a_signed_hard_bounce_is_processed_once_and_tied_to_its_email(client, session):
    reader = factories.subscriber(session, "ann@example.com", "news")
    delivery, message_id = sent_email(session, reader)
    body = signed(failed("ann@example.com", message_id))

    answer = post(client, body)
    assert answer.status_code == 200 and answer.json == {"processed": 1, "replays": 0}
    again = post(client, body)  # Mailgun posts again what it thinks was not taken
    assert again.status_code == 200 and again.json == {"processed": 0, "replays": 1}

    (report,) = session.query(BounceReport).all()
    assert (report.source, report.event_id, report.kind) == ("mailgun", "G9Bn5", BounceKind.HARD)
    assert report.delivery_id == delivery.id and report.status == "5.1.1"
    assert json.loads(report.raw)["event-data"]["id"] == "G9Bn5"  # the evidence, as it came
    session.refresh(delivery)
    assert delivery.outcome == DeliveryOutcome.BOUNCED
    assert delivery.last_error.startswith("bounced: 5.1.1 550")


def test_a_temporary_failure_is_a_soft_bounce(client, session):
    reader = factories.subscriber(session, "ann@example.com", "news")
    delivery, message_id = sent_email(session, reader)
    assert post(client, signed(failed("ann@example.com", message_id, "temporary"))).json == {
        "processed": 1, "replays": 0}  # fmt: skip
    (report,) = session.query(BounceReport).all()
    assert report.kind == BounceKind.SOFT
    session.refresh(delivery)
    assert delivery.outcome == DeliveryOutcome.SENT  # one soft bounce marks nothing


@pytest.mark.parametrize(
    "tamper, status",
    [
        (lambda event: signed(event, key="key-someone-else"), 403),
        (lambda event: signed(event, timestamp=time.time() - 3600), 403),  # captured, replayed
        (lambda event: json.dumps({"event-data": event}).encode(), 401),
    ],
    ids=["wrong key", "stale timestamp", "no signature"],
)
def test_a_call_not_signed_by_mailgun_changes_nothing_and_is_recorded(client, session, tamper,
                                                                      status):  # fmt: skip
    reader = factories.subscriber(session, "ann@example.com", "news")
    delivery, message_id = sent_email(session, reader)
    before = in_process("notifier_bounce_reports_unprocessed_total", source="mailgun",
                        cause="refused")  # fmt: skip

    answer = post(client, tamper(failed("ann@example.com", message_id)))
    assert answer.status_code == status and "Mailgun" in answer.json["error"]
    assert nothing_changed(session, delivery, reader)
    assert len(failures(session, "mailgun")) == 1  # shows on /ops/ and in `notifier status`
    assert in_process("notifier_bounce_reports_unprocessed_total", source="mailgun",
                      cause="refused") == before + 1  # fmt: skip


def test_bad_json_is_a_400_with_a_sentence(client, session):
    answer = post(client, b"{not json")
    assert answer.status_code == 400 and answer.json == {"error": "The body is not JSON."}
    assert count(session, BounceReport) == 0 and len(failures(session, "mailgun")) == 1


def test_the_webhook_is_off_without_its_key(settings, queue):
    answer = create_app(settings, queue).test_client().post(URL, data=b"{}")
    assert answer.status_code == 404
    assert answer.json == {
        "error": "The Mailgun bounce webhook is off: set MAILGUN_SIGNING_KEY to turn it on."
    }


def test_hard_bounces_by_webhook_count_toward_the_bounce_limit(client, session, settings):
    reader = factories.subscriber(session, "ann@example.com", "news")
    for number in range(settings.email_bounce_limit):
        _, message_id = sent_email(session, reader)
        assert post(client, signed(failed("ann@example.com", message_id,
                                          event_id=f"ev{number}"))).status_code == 200  # fmt: skip
        session.refresh(reader)
        last = number == settings.email_bounce_limit - 1
        assert reader.status == (SubscriberStatus.BOUNCED if last else SubscriberStatus.ACTIVE)
    (suppression,) = session.query(Suppression).all()
    assert (suppression.reason, suppression.source) == (SuppressionReason.HARD_BOUNCES, "mailgun")
    assert suppression.report.event_id == "ev2"


def test_a_complaint_stops_all_email_at_once(client, session):
    reader = factories.subscriber(session, "ann@example.com", "news", "economy")
    delivery, message_id = sent_email(session, reader)
    event = failed("ann@example.com", message_id)
    event.update(event="complained", id="cmp1")
    del event["severity"], event["delivery-status"]

    assert post(client, signed(event)).json == {"processed": 1, "replays": 0}
    session.refresh(reader)
    session.refresh(delivery)
    assert reader.status == SubscriberStatus.COMPLAINED and reader.categories == []
    assert delivery.outcome == DeliveryOutcome.COMPLAINED
    assert count(session, Suppression, Suppression.reason == SuppressionReason.COMPLAINT) == 1


def test_a_report_naming_no_email_of_ours_is_kept_and_acts_on_nobody(client, session):
    reader = factories.subscriber(session, "ann@example.com", "news")
    delivery, message_id = sent_email(session, reader)
    # Our Message-ID, but reported for another address: not the delivery's reader.
    assert post(client, signed(failed("bob@example.com", message_id))).status_code == 200
    (report,) = session.query(BounceReport).all()
    assert report.delivery_id is None
    session.refresh(reader)
    session.refresh(delivery)
    assert reader.status == SubscriberStatus.ACTIVE and delivery.outcome == DeliveryOutcome.SENT


def test_a_signed_bounce_address_the_relay_echoes_names_the_delivery(settings, queue, session):
    # BOUNCE_DOMAIN is empty by default: this deployment sends with VERP envelope senders.
    verp_settings = settings.with_overrides(mailgun_signing_key=KEY, bounce_domain="b.aze.test")
    client = create_app(verp_settings, queue).test_client()
    reader = factories.subscriber(session, "ann@example.com", "news")
    delivery, _ = sent_email(session, reader)
    event = failed("ann@example.com", "<relay-rewrote-it@mailgun.example>")
    event["envelope"]["sender"] = bounce_addresses(verp_settings).address(delivery.id)

    assert post(client, signed(event)).json == {"processed": 1, "replays": 0}
    (report,) = session.query(BounceReport).all()
    assert report.delivery_id == delivery.id


def test_a_refused_call_shows_on_the_ops_dashboard(settings, queue, session):
    from notifier.domain.editors import create_editor
    from tests.web.conftest import logged_in_client

    app = create_app(settings.with_overrides(mailgun_signing_key=KEY), queue)
    reader = factories.subscriber(session, "ann@example.com", "news")
    _, message_id = sent_email(session, reader)
    assert post(app.test_client(), signed(failed("ann@example.com", message_id), key="old-key")
                ).status_code == 403  # fmt: skip
    admin = create_editor(session, "admin@aze.media", "correct horse battery", "admin")
    session.commit()
    page = logged_in_client(app, admin).get("/ops/").text
    assert "webhook_mailgun" in page
    assert "The Mailgun signature does not match MAILGUN_SIGNING_KEY." in page


def test_calls_mailgun_signed_are_never_rate_limited_refused_ones_are(settings, queue, session):
    # A small RATE_LIMIT_PER_CLIENT, so the test need not post 600 calls to reach it.
    limited = settings.with_overrides(mailgun_signing_key=KEY,
                                      rate_limit_per_client="3 per minute")  # fmt: skip
    client = create_app(limited, queue).test_client()
    reader = factories.subscriber(session, "ann@example.com", "news")
    _, message_id = sent_email(session, reader)
    for number in range(6):  # a burst of bounces, more than the limit
        event = failed("ann@example.com", message_id, "temporary", f"burst-{number}")
        assert post(client, signed(event)).status_code == 200
    forged = signed(failed("ann@example.com", message_id), key="guess")
    assert [post(client, forged).status_code for _ in range(4)] == [403, 403, 403, 429]
    assert len(failures(session, "mailgun")) == 3
