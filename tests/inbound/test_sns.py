"""Which URLs the SNS verifier will fetch, and the string it checks signatures over: pure
functions, without Flask or a network."""

from __future__ import annotations

import re

import pytest

from notifier.inbound.webhooks import WebhookRefused
from notifier.inbound.webhooks.sns import DEFAULT_CERT_HOSTS, allowed_url, string_to_sign
from tests.support.sns import canonical

SNS_HOSTS = re.compile(DEFAULT_CERT_HOSTS, re.IGNORECASE)
LOOPBACK = re.compile(r"127\.0\.0\.1")


@pytest.mark.parametrize(
    "url, pattern, allowed",
    [
        ("https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem", SNS_HOSTS, True),
        (
            "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-a.pem",
            SNS_HOSTS,
            True,
        ),
        ("http://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem", SNS_HOSTS, False),
        ("https://sns.us-east-1.amazonaws.com.evil.example/cert.pem", SNS_HOSTS, False),
        ("https://evil.example/sns.us-east-1.amazonaws.com/cert.pem", SNS_HOSTS, False),
        ("https://sns.us-east-1.amazonaws.com@evil.example/cert.pem", SNS_HOSTS, False),
        ("https://x@sns.us-east-1.amazonaws.com/cert.pem", SNS_HOSTS, False),
        ("http://127.0.0.1:8080/cert.pem", SNS_HOSTS, False),
        ("file:///etc/passwd", SNS_HOSTS, False),
        ("http://127.0.0.1:8080/cert.pem", LOOPBACK, True),  # the tests' stand-in only
        ("ftp://127.0.0.1/cert.pem", LOOPBACK, False),
    ],
)
def test_only_sns_hosts_over_https_are_fetched(url, pattern, allowed):
    assert allowed_url(url, pattern) is allowed


def test_the_string_signed_follows_the_type_and_includes_a_subject_only_when_there_is_one():
    message = {"Type": "Notification", "MessageId": "m-1", "TopicArn": "arn:t",
               "Message": "line one\nline two", "Timestamp": "2026-12-05T15:00:00.000Z",
               "UnsubscribeURL": "https://sns.example/unsub"}  # fmt: skip
    assert string_to_sign(message) == (
        b"Message\nline one\nline two\nMessageId\nm-1\nTimestamp\n2026-12-05T15:00:00.000Z\n"
        b"TopicArn\narn:t\nType\nNotification\n"
    )
    with_subject = {**message, "Subject": "Bounce"}
    assert string_to_sign(with_subject) == canonical(with_subject)
    assert b"Subject\nBounce\nTimestamp" in string_to_sign(with_subject)


def test_a_confirmation_without_its_token_is_refused():
    message = {"Type": "SubscriptionConfirmation", "MessageId": "m", "TopicArn": "arn:t",
               "Message": "m", "Timestamp": "t", "SubscribeURL": "https://x"}  # fmt: skip
    with pytest.raises(WebhookRefused, match="no Token"):
        string_to_sign(message)
