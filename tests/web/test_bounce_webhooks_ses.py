"""Amazon SES through SNS end to end, against a local stand-in for SNS (tests/support/sns.py)
that holds a self-signed certificate made here and signs messages as SNS does: notifications
signed with SignatureVersion 1 and 2 are verified and processed once; the app confirms a
subscription by fetching the stand-in's SubscribeURL; a forged, tampered or foreign message
is refused and changes nothing."""

from __future__ import annotations

import json
import uuid

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from notifier.config import load_settings
from notifier.inbound.webhooks.sns import DEFAULT_CERT_HOSTS
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
from tests.support.sns import CERT_PATH, TOPIC, SnsStandIn
from tests.web.bounce_webhooks import count, failures, nothing_changed, sent_email

URL = "/webhooks/bounces/ses"


@pytest.fixture
def sns():
    stand_in = SnsStandIn().start()
    yield stand_in
    stand_in.stop()


@pytest.fixture
def client(settings, queue):
    # The webhook is off until its topic is named (SES_SNS_TOPIC_ARNS is empty by default).
    # SES_SNS_CERT_HOSTS admits only sns.<region>.amazonaws.com by default; the stand-in is
    # this machine (the tests reach no other), so it is admitted here, and only here. Plain
    # http is accepted for loopback hosts alone, so the stand-in needs no TLS certificate.
    configured = settings.with_overrides(ses_sns_topic_arns=(TOPIC,),
                                         ses_sns_cert_hosts=r"127\.0\.0\.1")  # fmt: skip
    return create_app(configured, queue).test_client()


def mail(reader_email: str, message_id: str) -> dict:
    """SES's "mail" object with the original headers included."""
    return {
        "timestamp": "2026-12-05T14:59:38.237Z", "source": "news@aze.test",
        "sourceArn": "arn:aws:ses:eu-central-1:123456789012:identity/aze.test",
        "sourceIp": "127.0.3.0", "sendingAccountId": "123456789012",
        "messageId": "0107018a-6b8f-4d2e-9a4b-3c5d7e9f1a2b-000000",
        "destination": [reader_email], "headersTruncated": False,
        "headers": [{"name": "From", "value": "Aze.Media <news@aze.test>"},
                    {"name": "To", "value": reader_email},
                    {"name": "Message-ID", "value": message_id},
                    {"name": "Subject", "value": "A story"}],
        "commonHeaders": {"from": ["Aze.Media <news@aze.test>"], "to": [reader_email],
                          "messageId": message_id, "subject": "A story"},
    }  # fmt: skip


def bounce(addresses: list[str], message_id: str, bounce_type: str = "Permanent",
           feedback_id: str = "0107018a-feedback-000000") -> dict:  # fmt: skip
    """An SES bounce notification, in the shape of SES's documentation."""
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": bounce_type, "bounceSubType": "General",
            "bouncedRecipients": [
                {"emailAddress": address, "action": "failed", "status": "5.1.1",
                 "diagnosticCode": f"smtp; 550 5.1.1 <{address}>... User unknown"}
                for address in addresses
            ],
            "timestamp": "2026-12-05T14:59:39.000Z", "feedbackId": feedback_id,
            "reportingMTA": "dns; b224-13.smtp-out.eu-central-1.amazonses.com",
        },
        "mail": mail(addresses[0], message_id),
    }  # fmt: skip


def complaint(address: str, message_id: str) -> dict:
    return {
        "notificationType": "Complaint",
        "complaint": {"userAgent": "Yahoo!-Mail-Feedback/2.0", "complaintFeedbackType": "abuse",
                      "complainedRecipients": [{"emailAddress": address}],
                      "timestamp": "2026-12-05T15:10:00.000Z", "feedbackId": "0107-cmp-000000",
                      "arrivalDate": "2026-12-05T15:09:58.000Z"},
        "mail": mail(address, message_id),
    }  # fmt: skip


def notification(ses_notification: dict) -> dict[str, str]:
    """The SNS Notification that carries it (unsigned: the stand-in signs it)."""
    return {
        "Type": "Notification", "MessageId": str(uuid.uuid4()), "TopicArn": TOPIC,
        "Message": json.dumps(ses_notification), "Timestamp": "2026-12-05T15:00:00.123Z",
        "UnsubscribeURL": "https://sns.eu-central-1.amazonaws.com/?Action=Unsubscribe"
                          f"&SubscriptionArn={TOPIC}:c9135db0",
    }  # fmt: skip


def post(client, message: dict[str, str]):
    # SNS posts JSON as text/plain, with headers naming the message type and topic.
    return client.post(URL, data=json.dumps(message), content_type="text/plain; charset=UTF-8",
                       headers={"x-amz-sns-message-type": message.get("Type", ""),
                                "x-amz-sns-topic-arn": message.get("TopicArn", "")})  # fmt: skip


@pytest.mark.parametrize("version", ["1", "2"])
def test_a_signed_bounce_is_processed_once(client, session, sns, version):
    reader = factories.subscriber(session, "ann@example.com", "news")
    delivery, message_id = sent_email(session, reader)
    message = sns.signed(notification(bounce(["ann@example.com"], message_id)), version)

    assert post(client, message).json == {"processed": 1, "replays": 0}
    assert post(client, message).json == {"processed": 0, "replays": 1}  # SNS retried
    assert sns.requests.count(CERT_PATH) == 1  # the certificate is kept, not fetched again

    (report,) = session.query(BounceReport).all()
    assert (report.source, report.kind, report.status) == ("ses", BounceKind.HARD, "5.1.1")
    assert report.event_id == "0107018a-feedback-000000/ann@example.com"
    assert report.delivery_id == delivery.id and "User unknown" in report.reason
    assert json.loads(report.raw)["Signature"] == message["Signature"]  # the evidence, whole
    session.refresh(delivery)
    assert delivery.outcome == DeliveryOutcome.BOUNCED


def test_each_recipient_of_a_notification_is_a_report(client, session, sns):
    reader = factories.subscriber(session, "ann@example.com", "news")
    delivery, message_id = sent_email(session, reader)
    message = sns.signed(notification(bounce(["ann@example.com", "bob@example.com"], message_id)))
    assert post(client, message).json == {"processed": 2, "replays": 0}
    reports = {r.recipient: r for r in session.query(BounceReport).all()}
    assert reports["ann@example.com"].delivery_id == delivery.id
    assert reports["bob@example.com"].delivery_id is None  # not that email's reader


@pytest.mark.parametrize("bounce_type", ["Transient", "Undetermined"])
def test_transient_and_undetermined_bounces_are_soft(client, session, sns, bounce_type):
    reader = factories.subscriber(session, "ann@example.com", "news")
    delivery, message_id = sent_email(session, reader)
    message = sns.signed(notification(bounce(["ann@example.com"], message_id, bounce_type)))
    assert post(client, message).status_code == 200
    (report,) = session.query(BounceReport).all()
    assert report.kind == BounceKind.SOFT
    session.refresh(delivery)
    assert delivery.outcome == DeliveryOutcome.SENT


def test_a_complaint_suppresses_at_once_and_drops_every_category(client, session, sns):
    reader = factories.subscriber(session, "ann@example.com", "news", "economy")
    delivery, message_id = sent_email(session, reader)
    assert post(client, sns.signed(notification(complaint("ann@example.com", message_id)), "2")
                ).json == {"processed": 1, "replays": 0}  # fmt: skip
    session.refresh(reader)
    session.refresh(delivery)
    assert reader.status == SubscriberStatus.COMPLAINED and reader.categories == []
    assert delivery.outcome == DeliveryOutcome.COMPLAINED
    (suppression,) = session.query(Suppression).all()
    assert (suppression.reason, suppression.source) == (SuppressionReason.COMPLAINT, "ses")


def subscription_confirmation(sns: SnsStandIn, subscribe_origin: str | None = None) -> dict:
    token = "2336412f37fb687f5d51e6e241d59b68c4e583a5cee0be6f95bbf97ab8d2441cf47b99e848408adaa"
    return {
        "Type": "SubscriptionConfirmation", "MessageId": str(uuid.uuid4()), "Token": token,
        "TopicArn": TOPIC,
        "Message": f"You have chosen to subscribe to the topic {TOPIC}.\nTo confirm the "
                   "subscription, visit the SubscribeURL included in this message.",
        "SubscribeURL": f"{subscribe_origin or sns.origin}/?Action=ConfirmSubscription"
                        f"&TopicArn={TOPIC}&Token={token}",
        "Timestamp": "2026-12-05T15:00:00.000Z",
    }  # fmt: skip


def test_a_subscription_confirmation_makes_the_app_confirm_it(client, session, sns):
    message = sns.signed(subscription_confirmation(sns))
    assert post(client, message).status_code == 200
    (confirming,) = [path for path in sns.requests if path != CERT_PATH]
    assert confirming == message["SubscribeURL"].removeprefix(sns.origin)
    assert count(session, BounceReport) == 0


def test_a_subscribe_url_off_the_sns_hosts_is_never_fetched(client, session, sns):
    message = sns.signed(subscription_confirmation(sns, "http://localhost:9"))
    answer = post(client, message)
    assert answer.status_code == 403 and "SubscribeURL" in answer.json["error"]
    assert sns.requests == [CERT_PATH]  # the certificate, and nothing else


@pytest.mark.parametrize(
    "forgery", ["another key", "message changed after signing", "another topic", "no signature"]
)
def test_a_message_sns_did_not_sign_for_our_topic_changes_nothing(client, session, sns, forgery):
    reader = factories.subscriber(session, "ann@example.com", "news")
    delivery, message_id = sent_email(session, reader)
    unsigned = notification(bounce(["ann@example.com"], message_id))
    if forgery == "another key":
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        message = sns.signed(unsigned, key=other)
    elif forgery == "message changed after signing":
        message = sns.signed(notification(bounce(["ann@example.com"], message_id, "Transient")))
        message["Message"] = unsigned["Message"]
    elif forgery == "another topic":  # signed by SNS, but for somebody else's topic
        message = sns.signed({**unsigned, "TopicArn": TOPIC.replace("123456789012", "999")})
    else:
        message = {**unsigned, "SignatureVersion": "1", "SigningCertURL": sns.cert_url}

    answer = post(client, message)
    assert answer.status_code == 403 and answer.json["error"]
    assert nothing_changed(session, delivery, reader)
    assert len(failures(session, "ses")) == 1


def test_the_default_hosts_refuse_a_certificate_from_anywhere_else(settings, queue, session, sns):
    assert load_settings({"SECRET_KEY": "x", "NOTIFIER_DATA_DIR": str(settings.data_dir)}
                         ).ses_sns_cert_hosts == DEFAULT_CERT_HOSTS  # fmt: skip
    client = create_app(settings.with_overrides(ses_sns_topic_arns=(TOPIC,)), queue).test_client()
    message = sns.signed(notification(bounce(["ann@example.com"], "<x@aze.test>")))
    answer = post(client, message)
    assert answer.status_code == 403 and "SigningCertURL" in answer.json["error"]
    assert sns.requests == []  # never fetched
    assert count(session, BounceReport) == 0


def test_sns_out_of_reach_is_a_503_so_sns_posts_again(client, session, sns):
    message = sns.signed(notification(bounce(["ann@example.com"], "<x@aze.test>")))
    sns.stop()  # the certificate's host does not answer
    answer = post(client, message)
    assert answer.status_code == 503 and "Could not reach SNS" in answer.json["error"]
    (failure,) = failures(session, "ses")
    assert "RelayUnreachable" in failure.cause


def test_bad_json_and_a_switched_off_webhook(client, settings, queue, session):
    answer = client.post(URL, data=b"{", content_type="text/plain")
    assert answer.status_code == 400 and answer.json == {"error": "The body is not JSON."}
    off = create_app(settings, queue).test_client().post(URL, data=b"{}")
    assert off.status_code == 404 and "SES_SNS_TOPIC_ARNS" in off.json["error"]


def test_a_removed_subscription_shows_as_a_failure_for_ops(client, session, sns):
    removal = {
        **subscription_confirmation(sns),
        "Type": "UnsubscribeConfirmation",
        "Message": f"You have chosen to deactivate subscription {TOPIC}:c9135db0.",
    }
    assert post(client, sns.signed(removal)).status_code == 200
    (failure,) = failures(session, "ses")
    assert "SubscriptionRemoved" in failure.cause and TOPIC in failure.cause
    assert [path for path in sns.requests if path != CERT_PATH] == []  # nothing confirmed
