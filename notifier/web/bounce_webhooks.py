"""Relays' bounce and complaint webhooks: /webhooks/bounces/<relay>. Each view checks its
relay's secret or signature (notifier.inbound.webhooks.<relay>), hands the events to the one
bounce processor and answers 200; a relay posts again what was not answered 2xx.

Outside /api/v1/: these are the relays' endpoints, not part of the API that readers' pages
and the newsroom use (nor of its OpenAPI document). A webhook whose secret is not set
answers 404. A call that fails (refused, unreadable, or not stored) is never silent: it is
counted in /metrics and kept as a task failure (notifier.bounces.webhook_<relay>) with its
cause, as the listener's failures are.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy.exc import InterfaceError, OperationalError

from notifier.db import session_factory
from notifier.domain.bounces import ProviderReport
from notifier.inbound.processing import BounceProcessor
from notifier.inbound.unprocessed import UnprocessedReports
from notifier.inbound.webhooks import (
    PayloadError,
    WebhookRefused,
    mailgun,
    postmark,
    sendgrid,
    ses,
    sns,
)
from notifier.timeutil import utcnow
from notifier.web.context import settings

bp = Blueprint("bounce_webhooks", __name__, url_prefix="/webhooks/bounces")
log = logging.getLogger(__name__)


@bp.url_value_preprocessor
def allow_relay_batches(_endpoint: str | None, _values: dict | None) -> None:
    """A relay's call may carry a batch (SendGrid) or the bounce itself (Postmark's content):
    up to BOUNCE_MAX_BYTES, not the 64 KiB of a form. Set here because URL preprocessors run
    before every before_request function, the first of which already reads the body."""
    request.max_content_length = settings().bounce_max_bytes


def _off(relay: str, setting: str):
    return jsonify(error=f"The {relay} bounce webhook is off: set {setting} to turn it on."), 404


@bp.post("/ses")
def ses_notifications():
    """SNS posts SubscriptionConfirmation once (confirmed here), then Notifications."""
    topics = settings().ses_sns_topic_arns
    if not topics:
        return _off("Amazon SES", "SES_SNS_TOPIC_ARNS")
    certificates: sns.SigningCertificates = _parts()["sns"]
    verified: list[dict[str, str]] = []

    def read(raw: bytes) -> list[ProviderReport]:
        message = sns.read_message(raw, topics)
        certificates.verify(message)  # fetches the signing certificate before the database
        verified.append(message)
        if message["Type"] == "SubscriptionConfirmation":
            certificates.confirm(message)
        if message["Type"] != "Notification":
            return []
        return ses.read_notification(message, raw)

    answer = _receive(ses.SOURCE, read)
    for message in verified:
        _note_subscription(message)
    return answer


def _note_subscription(message: dict[str, str]) -> None:
    """A confirmed subscription is logged; one removed is kept as a failure for ops to see,
    since SES's bounces and complaints stop reaching us from then on."""
    if message["Type"] == "SubscriptionConfirmation":
        log.info("SNS subscription to %s confirmed", message["TopicArn"])
    elif message["Type"] == "UnsubscribeConfirmation":
        removed = sns.SubscriptionRemoved(
            f"SNS removed this service's subscription to {message['TopicArn']}: SES bounces and "
            "complaints no longer arrive (subscribe the webhook URL to the topic again)"
        )
        _unprocessed(ses.SOURCE, removed, json.dumps(message).encode(), "unsubscribed")


@bp.post("/mailgun")
def mailgun_events():
    key = settings().mailgun_signing_key
    if not key:
        return _off("Mailgun", "MAILGUN_SIGNING_KEY")
    max_age = settings().bounce_webhook_max_age_seconds
    return _receive(mailgun.SOURCE, lambda raw: mailgun.read_events(raw, key, time.time(), max_age))


@bp.post("/postmark")
@bp.post("/postmark/<token>")
def postmark_events(token: str | None = None):
    expected = settings().postmark_webhook_token
    if not expected:
        return _off("Postmark", "POSTMARK_WEBHOOK_TOKEN")
    password = request.authorization.password if request.authorization else None

    def read(raw: bytes) -> list[ProviderReport]:
        postmark.check_token(token, password, expected)
        return postmark.read_events(raw)

    return _receive(postmark.SOURCE, read)


@bp.post("/sendgrid")
def sendgrid_events():
    configured = settings().sendgrid_webhook_public_key
    if not configured:
        return _off("SendGrid", "SENDGRID_WEBHOOK_PUBLIC_KEY")
    key, max_age = sendgrid.public_key(configured), settings().bounce_webhook_max_age_seconds
    signature = request.headers.get(sendgrid.SIGNATURE_HEADER)
    timestamp = request.headers.get(sendgrid.TIMESTAMP_HEADER)

    def read(raw: bytes) -> list[ProviderReport]:
        sendgrid.check_signature(raw, signature, timestamp, key, time.time(), max_age)
        return sendgrid.read_events(raw)

    return _receive(sendgrid.SOURCE, read)


def _receive(source: str, read: Callable[[bytes], list[ProviderReport]]):
    """Prove and read the call, then process its events; every failure is recorded."""
    raw = request.get_data(cache=True)
    try:
        reports = read(raw)
    except WebhookRefused as refused:
        _unprocessed(source, refused, raw, "refused")
        return jsonify(error=str(refused)), refused.status
    except PayloadError as problem:
        _unprocessed(source, problem, raw, "payload")
        return jsonify(error=str(problem)), 400
    except sns.RelayUnreachable as error:  # SNS posts the message again later
        _unprocessed(source, error, raw, "fetch")
        return jsonify(error=f"Could not reach SNS: {error}."), 503
    try:
        processed = _processor().process_provider(reports)
    except (OperationalError, InterfaceError) as error:  # the relay will post it again
        _unprocessed(source, error, raw, "database")
        return jsonify(error="The database is not reachable; post the event again later."), 503
    except Exception as error:  # kept with its cause and shown on /ops/, not hidden
        _unprocessed(source, error, raw, "error")
        return jsonify(error="The event could not be processed; it is recorded for ops."), 500
    for recorder in _parts()["unprocessed"].values():  # the database is back: keep those
        recorder.write_waiting()
    return jsonify(
        processed=sum(not p.replay for p in processed), replays=sum(p.replay for p in processed)
    )


def _parts() -> dict:
    parts = current_app.extensions.get("bounce_webhooks")
    if parts is None:
        config = settings()
        parts = current_app.extensions["bounce_webhooks"] = {
            "processor": BounceProcessor(config, session_factory(config.database_url)),
            "unprocessed": {},
            "sns": sns.SigningCertificates(config.ses_sns_cert_hosts,
                                           config.sns_fetch_timeout_seconds),
        }  # fmt: skip
    return parts


def _processor() -> BounceProcessor:
    return _parts()["processor"]


def _unprocessed(source: str, error: BaseException, raw: bytes, cause: str) -> None:
    recorders = _parts()["unprocessed"]
    if source not in recorders:
        recorders[source] = UnprocessedReports(
            settings().database_url, source, f"notifier.bounces.webhook_{source}"
        )
    recorders[source].add(error, raw, 0, cause, utcnow())
