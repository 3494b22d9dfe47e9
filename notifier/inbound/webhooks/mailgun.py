"""Mailgun's webhooks (failed, complained): each call carries an HMAC-SHA256 of its timestamp
and token under the webhook signing key, which is checked, and a timestamp older than
BOUNCE_WEBHOOK_MAX_AGE_SECONDS is refused, so a captured call cannot be replayed later."""

from __future__ import annotations

import hashlib
import hmac

from notifier.domain.bounces import ProviderReport
from notifier.inbound.webhooks import (
    PayloadError,
    WebhookRefused,
    fields,
    json_payload,
    our_message_id,
    strings_in,
    text,
)
from notifier.models import BounceKind

SOURCE = "mailgun"


def read_events(raw: bytes, signing_key: str, now: float, max_age: float) -> list[ProviderReport]:
    """The call's event as a report ([] for an event that is no bounce or complaint)."""
    body = json_payload(raw)
    if not isinstance(body, dict):
        raise PayloadError('Send Mailgun\'s JSON object {"signature": ..., "event-data": ...}.')
    check_signature(body.get("signature"), signing_key, now, max_age)
    event = body.get("event-data")
    if not isinstance(event, dict):
        raise PayloadError('The call has no "event-data" object.')
    report = _report(event, raw.decode("utf-8", "replace"))
    return [report] if report is not None else []


def check_signature(signature: object, signing_key: str, now: float, max_age: float) -> None:
    if not isinstance(signature, dict):
        raise WebhookRefused(401, 'The call has no Mailgun "signature" object.')
    timestamp, token = text(signature.get("timestamp"), 40), text(signature.get("token"), 200)
    given = text(signature.get("signature"), 200)
    expected = hmac.new(signing_key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256)
    if not hmac.compare_digest(given.encode(), expected.hexdigest().encode()):
        raise WebhookRefused(403, "The Mailgun signature does not match MAILGUN_SIGNING_KEY.")
    try:
        age = now - float(timestamp)
    except ValueError:
        raise WebhookRefused(403, "The Mailgun signature's timestamp is not a number.") from None
    if abs(age) > max_age:
        raise WebhookRefused(403, f"The Mailgun signature is {age:.0f} s old, older than "
                             "BOUNCE_WEBHOOK_MAX_AGE_SECONDS allows.")  # fmt: skip


def _report(event: dict, raw: str) -> ProviderReport | None:
    name = text(event.get("event"))
    if name == "failed":
        permanent = text(event.get("severity")) == "permanent"
        kind = BounceKind.HARD if permanent else BounceKind.SOFT
    elif name == "complained":
        kind = BounceKind.COMPLAINT
    else:
        return None  # delivered, opened, ...: nothing to do with bounces
    event_id, recipient = text(event.get("id"), 200), text(event.get("recipient"), 320)
    if not event_id or not recipient:
        raise PayloadError('A Mailgun event needs its "id" and "recipient".')
    status = fields(event.get("delivery-status"))
    headers = fields(fields(event.get("message")).get("headers"))
    sender = fields(event.get("envelope")).get("sender")
    reason = " ".join(
        filter(
            None,
            (
                text(status.get("code")),
                text(status.get("message")),
                text(status.get("description")),
                text(event.get("reason")),
            ),
        )
    )
    if kind == BounceKind.COMPLAINT:
        reason = "spam complaint reported through Mailgun"
    return ProviderReport(
        source=SOURCE, event_id=event_id, kind=kind, recipient=recipient,
        reason=reason or f"Mailgun: {name}", raw=raw,
        status=text(status.get("enhanced-code"), 20) or None,
        message_id=our_message_id(headers.get("message-id")),
        bounce_addresses=strings_in([sender, *fields(event.get("user-variables")).values()]),
    )  # fmt: skip
