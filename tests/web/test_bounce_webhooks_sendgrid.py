"""SendGrid's signed Event Webhook end to end: a batch signed with an ECDSA key made here (the
test holds the private half SendGrid would) is verified with the public half as
SENDGRID_WEBHOOK_PUBLIC_KEY, its bounce, dropped and spamreport events are processed once;
a wrong signature, a stale timestamp or none at all changes nothing and is recorded."""

from __future__ import annotations

import base64
import json
import time

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from notifier.config import ConfigError
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
from tests.conftest import make_settings
from tests.web.bounce_webhooks import count, failures, nothing_changed, sent_email

URL = "/webhooks/bounces/sendgrid"
SENDGRID_KEY = ec.generate_private_key(ec.SECP256R1())
SOMEONE_ELSE = ec.generate_private_key(ec.SECP256R1())


def verification_key(private: ec.EllipticCurvePrivateKey) -> str:
    """The public key as SendGrid's settings page shows it: base64 of its DER form."""
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


@pytest.fixture
def client(settings, queue):
    # The webhook is off until its verification key is set (the default is empty: 404).
    configured = settings.with_overrides(sendgrid_webhook_public_key=verification_key(SENDGRID_KEY))
    return create_app(configured, queue).test_client()


def signature_headers(body: bytes, key=SENDGRID_KEY, timestamp: float | None = None) -> dict:
    """As SendGrid signs a call: ECDSA over the timestamp followed by the raw body."""
    stamp = str(int(timestamp if timestamp is not None else time.time()))
    signature = key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {"X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": stamp}  # fmt: skip


def post(client, events, key=SENDGRID_KEY, timestamp: float | None = None,
         headers: dict | None = None):  # fmt: skip
    body = events if isinstance(events, bytes) else json.dumps(events).encode()
    if headers is None:
        headers = signature_headers(body, key, timestamp)
    return client.post(URL, data=body, content_type="application/json", headers=headers)


def event(name: str, address: str, message_id: str, event_id: str, **fields) -> dict:
    """An event in the shape of SendGrid's documentation."""
    return {
        "email": address, "timestamp": int(time.time()), "smtp-id": message_id,
        "event": name, "category": ["article"], "sg_event_id": event_id,
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0", **fields,
    }  # fmt: skip


def hard_bounce(address: str, message_id: str, event_id: str = "6g4ZI7SA-xmRDv57GoPIPw==") -> dict:
    return event("bounce", address, message_id, event_id, type="bounce", status="5.1.1",
                 reason="550 5.1.1 The email account that you tried to reach does not exist.",
                 bounce_classification="Invalid Address", tls=1)  # fmt: skip


def test_a_signed_batch_is_processed_once(client, session):
    reader = factories.subscriber(session, "ann@example.com", "news")
    delivery, message_id = sent_email(session, reader)
    batch = [
        event("processed", "ann@example.com", message_id, "p-1"),
        event("delivered", "bob@example.com", "<other@aze.test>", "d-1", response="250 OK"),
        hard_bounce("ann@example.com", message_id),
    ]
    assert post(client, batch).json == {"processed": 1, "replays": 0}
    assert post(client, batch).json == {"processed": 0, "replays": 1}  # SendGrid retried

    (report,) = session.query(BounceReport).all()
    assert (report.source, report.kind, report.status) == ("sendgrid", BounceKind.HARD, "5.1.1")
    assert report.event_id == "6g4ZI7SA-xmRDv57GoPIPw==" and report.delivery_id == delivery.id
    assert json.loads(report.raw)["bounce_classification"] == "Invalid Address"
    session.refresh(delivery)
    assert delivery.outcome == DeliveryOutcome.BOUNCED


@pytest.mark.parametrize(
    "fields, kind",
    [
        ({"event": "bounce", "type": "blocked", "status": "5.7.1"}, BounceKind.SOFT),
        ({"event": "dropped", "reason": "Bounced Address"}, BounceKind.HARD),
        ({"event": "dropped", "reason": "Unsubscribed Address"}, BounceKind.UNRELATED),
        ({"event": "dropped", "reason": "Spam Reporting Address"}, BounceKind.COMPLAINT),
        ({"event": "spamreport"}, BounceKind.COMPLAINT),
    ],
)
def test_sendgrid_events_and_what_they_are(client, session, fields, kind):
    reader = factories.subscriber(session, "ann@example.com", "news")
    _, message_id = sent_email(session, reader)
    assert post(client, [{**event("x", "ann@example.com", message_id, "e-1"), **fields}]).json == {
        "processed": 1, "replays": 0}  # fmt: skip
    (report,) = session.query(BounceReport).all()
    assert report.kind == kind


def test_a_spam_report_suppresses_at_once_and_drops_every_category(client, session):
    reader = factories.subscriber(session, "ann@example.com", "news", "economy")
    delivery, message_id = sent_email(session, reader)
    assert (
        post(client, [event("spamreport", "ann@example.com", message_id, "s-1")]).status_code == 200
    )
    session.refresh(reader)
    assert reader.status == SubscriberStatus.COMPLAINED and reader.categories == []
    assert count(session, Suppression, Suppression.reason == SuppressionReason.COMPLAINT) == 1
    session.refresh(delivery)
    assert delivery.outcome == DeliveryOutcome.COMPLAINED


@pytest.mark.parametrize(
    "how, status",
    [("another key", 403), ("stale", 403), ("body changed", 403), ("unsigned", 401)],
)
def test_a_call_sendgrid_did_not_sign_changes_nothing(client, session, how, status):
    reader = factories.subscriber(session, "ann@example.com", "news")
    delivery, message_id = sent_email(session, reader)
    batch = [hard_bounce("ann@example.com", message_id)]
    if how == "another key":
        answer = post(client, batch, key=SOMEONE_ELSE)
    elif how == "stale":
        answer = post(client, batch, timestamp=time.time() - 3600)
    elif how == "body changed":  # the headers of a call SendGrid signed, on another body
        answer = post(client, batch, headers=signature_headers(b"[]"))
    else:
        answer = post(client, batch, headers={})
    assert answer.status_code == status and "SendGrid" in answer.json["error"]
    assert nothing_changed(session, delivery, reader)
    assert len(failures(session, "sendgrid")) == 1


def test_bad_json_a_switched_off_webhook_and_a_bad_key(client, settings, queue, session, tmp_path):
    assert post(client, b"[{").json == {"error": "The body is not JSON."}
    assert post(client, {"event": "bounce"}).json == {
        "error": "Send SendGrid's JSON array of events."}  # fmt: skip
    assert len(failures(session, "sendgrid")) == 2
    off = create_app(settings, queue).test_client().post(URL, data=b"[]")
    assert off.status_code == 404 and "SENDGRID_WEBHOOK_PUBLIC_KEY" in off.json["error"]
    with pytest.raises(ConfigError, match="SENDGRID_WEBHOOK_PUBLIC_KEY is not a public key"):
        make_settings(tmp_path, SENDGRID_WEBHOOK_PUBLIC_KEY="bm90IGEga2V5")


def test_a_batch_larger_than_a_form_is_taken_up_to_bounce_max_bytes(client, session, settings):
    reader = factories.subscriber(session, "ann@example.com", "news")
    _, message_id = sent_email(session, reader)
    opens = [event("open", "ann@example.com", message_id, f"o-{n}", useragent="x" * 200)
             for n in range(400)]  # fmt: skip
    batch = [*opens, hard_bounce("ann@example.com", message_id)]
    assert 64 * 1024 < len(json.dumps(batch)) < settings.bounce_max_bytes
    assert post(client, batch).json == {"processed": 1, "replays": 0}
    too_big = [event("open", "ann@example.com", message_id, "o", useragent="x" * 1_100_000)]
    assert post(client, too_big).status_code == 413
    assert count(session, BounceReport) == 1
