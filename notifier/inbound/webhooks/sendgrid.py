"""SendGrid's Event Webhook (signed): each call carries an ECDSA (P-256, SHA-256) signature
of its timestamp followed by the raw body, checked with the verification key SendGrid shows
(SENDGRID_WEBHOOK_PUBLIC_KEY); a timestamp older than BOUNCE_WEBHOOK_MAX_AGE_SECONDS is
refused. One call holds a batch of events; bounce, dropped and spamreport are read, the rest
(delivered, open, click, deferred, ...) are not ours to act on."""

from __future__ import annotations

import base64
import binascii
import json

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from notifier.domain.bounces import ProviderReport
from notifier.inbound.webhooks import (
    MAX_EVENTS,
    PayloadError,
    WebhookRefused,
    json_payload,
    our_message_id,
    strings_in,
    text,
)
from notifier.inbound.webhooks.sendgrid_key import public_key
from notifier.models import BounceKind

SOURCE = "sendgrid"
__all__ = ["check_signature", "public_key", "read_events"]
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
# Why SendGrid dropped a message without sending it: an address that bounced or complained
# before is evidence about the address; the other reasons are about the message or the list.
DROPPED = {
    "bounced address": BounceKind.HARD,
    "invalid": BounceKind.HARD,
    "spam reporting address": BounceKind.COMPLAINT,
}


def check_signature(
    raw: bytes, signature: str | None, timestamp: str | None, key: ec.EllipticCurvePublicKey,
    now: float, max_age: float,
) -> None:  # fmt: skip
    if not signature or not timestamp:
        raise WebhookRefused(401, f"The call has no {SIGNATURE_HEADER} and {TIMESTAMP_HEADER} "
                             "headers: turn on the signed Event Webhook in SendGrid.")  # fmt: skip
    try:
        key.verify(base64.b64decode(signature, validate=True), timestamp.encode() + raw,
                   ec.ECDSA(hashes.SHA256()))  # fmt: skip
    except (InvalidSignature, binascii.Error, ValueError):
        raise WebhookRefused(403, "The SendGrid signature does not verify with "
                             "SENDGRID_WEBHOOK_PUBLIC_KEY.") from None  # fmt: skip
    try:
        age = now - float(timestamp)
    except ValueError:
        raise WebhookRefused(403, "The SendGrid timestamp is not a number.") from None
    if abs(age) > max_age:
        raise WebhookRefused(403, f"The SendGrid signature is {age:.0f} s old, older than "
                             "BOUNCE_WEBHOOK_MAX_AGE_SECONDS allows.")  # fmt: skip


def read_events(raw: bytes) -> list[ProviderReport]:
    events = json_payload(raw)
    if not isinstance(events, list):
        raise PayloadError("Send SendGrid's JSON array of events.")
    if len(events) > MAX_EVENTS:
        raise PayloadError(f"A call may hold at most {MAX_EVENTS} events.")
    reports = [_report(event) for event in events if isinstance(event, dict)]
    return [report for report in reports if report is not None]


def _kind(event: dict) -> BounceKind | None:
    name = text(event.get("event"))
    if name == "bounce":
        return BounceKind.SOFT if text(event.get("type")) == "blocked" else BounceKind.HARD
    if name == "spamreport":
        return BounceKind.COMPLAINT
    if name == "dropped":
        return DROPPED.get(text(event.get("reason")).lower(), BounceKind.UNRELATED)
    return None


def _report(event: dict) -> ProviderReport | None:
    kind = _kind(event)
    if kind is None:
        return None
    event_id, recipient = text(event.get("sg_event_id"), 200), text(event.get("email"), 320)
    if not event_id or not recipient:
        raise PayloadError('A SendGrid bounce event needs its "sg_event_id" and "email".')
    name = text(event.get("event"))
    reason = text(event.get("reason")) or text(event.get("bounce_classification"))
    if kind == BounceKind.COMPLAINT and name == "spamreport":
        reason = "spam complaint reported through SendGrid"
    return ProviderReport(
        source=SOURCE, event_id=event_id, kind=kind, recipient=recipient,
        reason=f"SendGrid {name}: {reason}" if reason else f"SendGrid {name}",
        raw=json.dumps(event, ensure_ascii=False), status=text(event.get("status"), 20) or None,
        message_id=our_message_id(event.get("smtp-id")),
        # Custom arguments arrive as fields of the event itself.
        bounce_addresses=strings_in(v for k, v in event.items() if k != "email"),
    )  # fmt: skip
