"""Postmark's bounce and spam-complaint webhooks end to end: authenticated by the token in
the webhook URL (basic auth or the path), in Postmark's own payload shape, processed once;
a wrong or missing token changes nothing and is recorded."""

from __future__ import annotations

import base64
import json

import pytest

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
from tests.bounces.corpus import load
from tests.web.bounce_webhooks import count, failures, nothing_changed, sent_email

TOKEN = "pm-6c1f0d9e6a3b4f0bb1e2a7d84c5e9f31"
URL = "/webhooks/bounces/postmark"


@pytest.fixture
def client(settings, queue):
    # The webhook is off until its token is set (the default is empty: 404).
    return create_app(settings.with_overrides(postmark_webhook_token=TOKEN), queue).test_client()


def basic(password: str) -> dict:
    """What Postmark sends for a webhook URL https://postmark:<password>@host/..."""
    return {"Authorization": "Basic " + base64.b64encode(f"postmark:{password}".encode()).decode()}


def bounce(address: str, bounce_type: str = "HardBounce", content: str | None = None,
           bounce_id: int = 4323372036854775807) -> dict:  # fmt: skip
    """A bounce webhook in the shape of Postmark's documentation."""
    body = {
        "RecordType": "Bounce", "MessageStream": "outbound", "ID": bounce_id,
        "Type": bounce_type, "TypeCode": 1, "Name": "Hard bounce", "Tag": "article",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483", "Metadata": {}, "ServerID": 23,
        "Description": "The server was unable to deliver your message (ex: unknown user, "
                       "mailbox not found).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": address, "From": "news@aze.test", "BouncedAt": "2026-12-05T16:33:54.9070259Z",
        "DumpAvailable": True, "Inactive": True, "CanActivate": True, "Subject": "A story",
    }  # fmt: skip
    if content is not None:
        body["Content"] = content  # "include bounce content" is on
    return body


def with_dsn(reader_email: str, message_id: str) -> str:
    """The bounce Postmark received, which quotes our message's headers."""
    return load("postfix_user_unknown.eml", reader_email, "pm_bounces@pm-bounces.aze.test",
                message_id).decode()  # fmt: skip


def post(client, body: dict, url: str = URL, headers: dict | None = None):
    return client.post(url, data=json.dumps(body), content_type="application/json",
                       headers=headers or {})  # fmt: skip


@pytest.mark.parametrize("how", ["basic auth", "path"])
def test_a_hard_bounce_with_the_token_is_processed_once(client, session, how):
    reader = factories.subscriber(session, "ann@example.com", "news")
    delivery, message_id = sent_email(session, reader)
    body = bounce("ann@example.com", content=with_dsn("ann@example.com", message_id))
    url, headers = (URL, basic(TOKEN)) if how == "basic auth" else (f"{URL}/{TOKEN}", None)

    assert post(client, body, url, headers).json == {"processed": 1, "replays": 0}
    assert post(client, body, url, headers).json == {"processed": 0, "replays": 1}

    (report,) = session.query(BounceReport).all()
    assert (report.source, report.kind, report.status) == ("postmark", BounceKind.HARD, "5.1.1")
    assert report.event_id == "Bounce:4323372036854775807"
    assert report.delivery_id == delivery.id and report.subscriber_id == reader.id
    assert json.loads(report.raw)["Content"].startswith("Return-Path")  # kept as it came
    session.refresh(delivery)
    assert delivery.outcome == DeliveryOutcome.BOUNCED


@pytest.mark.parametrize(
    "url, headers, status",
    [
        (URL, None, 401),
        (URL, basic("guessed-token"), 403),
        (f"{URL}/guessed-token", None, 403),
    ],
    ids=["no token", "wrong basic auth", "wrong path token"],
)
def test_a_call_without_the_token_changes_nothing(client, session, url, headers, status):
    reader = factories.subscriber(session, "ann@example.com", "news")
    delivery, message_id = sent_email(session, reader)
    body = bounce("ann@example.com", content=with_dsn("ann@example.com", message_id))

    answer = post(client, body, url, headers)
    assert answer.status_code == status and "POSTMARK_WEBHOOK_TOKEN" in answer.json["error"]
    assert nothing_changed(session, delivery, reader)
    assert len(failures(session, "postmark")) == 1


def test_a_spam_complaint_suppresses_at_once_and_drops_every_category(client, session):
    reader = factories.subscriber(session, "ann@example.com", "news", "economy")
    delivery, message_id = sent_email(session, reader)
    complaint = bounce("ann@example.com", "SpamComplaint", with_dsn("ann@example.com", message_id))
    complaint.update(RecordType="SpamComplaint", TypeCode=512, Name="Spam complaint")

    assert post(client, complaint, headers=basic(TOKEN)).json == {"processed": 1, "replays": 0}
    session.refresh(reader)
    assert reader.status == SubscriberStatus.COMPLAINED and reader.categories == []
    assert count(session, Suppression, Suppression.reason == SuppressionReason.COMPLAINT) == 1
    session.refresh(delivery)
    assert delivery.outcome == DeliveryOutcome.COMPLAINED


@pytest.mark.parametrize(
    "bounce_type, kind",
    [
        ("HardBounce", BounceKind.HARD),
        ("SoftBounce", BounceKind.SOFT),
        ("Transient", BounceKind.SOFT),
        ("Blocked", BounceKind.SOFT),
        ("AutoResponder", BounceKind.AUTO_REPLY),
        ("AddressChange", BounceKind.UNRELATED),
    ],
)
def test_postmark_bounce_types(client, session, bounce_type, kind):
    reader = factories.subscriber(session, "ann@example.com", "news")
    _, message_id = sent_email(session, reader)
    body = bounce("ann@example.com", bounce_type, with_dsn("ann@example.com", message_id))
    assert post(client, body, headers=basic(TOKEN)).status_code == 200
    (report,) = session.query(BounceReport).all()
    assert report.kind == kind
    session.refresh(reader)
    assert reader.status == SubscriberStatus.ACTIVE  # one bounce of any kind suppresses nobody


def test_a_delivery_event_is_taken_and_ignored(client, session):
    answer = post(client, {"RecordType": "Delivery", "Recipient": "ann@example.com"},
                  headers=basic(TOKEN))  # fmt: skip
    assert answer.json == {"processed": 0, "replays": 0}
    assert count(session, BounceReport) == 0


def test_bad_json_and_a_switched_off_webhook(client, settings, queue, session):
    answer = client.post(URL, data=b"[1,", content_type="application/json", headers=basic(TOKEN))
    assert answer.status_code == 400 and answer.json == {"error": "The body is not JSON."}
    off = create_app(settings, queue).test_client().post(f"{URL}/{TOKEN}", data=b"{}")
    assert off.status_code == 404 and "POSTMARK_WEBHOOK_TOKEN" in off.json["error"]
