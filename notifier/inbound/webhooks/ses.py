"""Amazon SES's bounce and complaint notifications, as SNS delivers them (the SNS side is
notifier.inbound.webhooks.sns). A Permanent bounce is hard; Transient and Undetermined are
soft (SES cannot tell, so they only count over days); a complaint stops all email. One
notification may name several recipients: each is a report of its own."""

from __future__ import annotations

import json

from notifier.domain.bounces import ProviderReport
from notifier.inbound.webhooks import (
    MAX_EVENTS,
    PayloadError,
    fields,
    our_message_id,
    strings_in,
    text,
)
from notifier.models import BounceKind

SOURCE = "ses"
BOUNCE_KINDS = {"Permanent": BounceKind.HARD, "Transient": BounceKind.SOFT,
                "Undetermined": BounceKind.SOFT}  # fmt: skip


def read_notification(message: dict[str, str], raw: bytes) -> list[ProviderReport]:
    """The reports in an SNS Notification from SES ([] for SES's other notifications:
    deliveries, sends, opens)."""
    try:
        notification = json.loads(message.get("Message", ""))
    except ValueError:
        raise PayloadError("The SNS Message is not an SES notification (JSON).") from None
    notification = fields(notification)
    # Identity notifications say notificationType; configuration-set events say eventType.
    kind = text(notification.get("notificationType") or notification.get("eventType"))
    if kind == "Bounce":
        details = fields(notification.get("bounce"))
        recipients = details.get("bouncedRecipients")
        bounce_type = text(details.get("bounceType"))
        default = f"{bounce_type}/{text(details.get('bounceSubType'))} bounce reported by SES"
    elif kind == "Complaint":
        details = fields(notification.get("complaint"))
        recipients = details.get("complainedRecipients")
        feedback = text(details.get("complaintFeedbackType")) or "abuse"
        default = f"spam complaint ({feedback}) reported through SES"
    else:
        return []
    if not isinstance(recipients, list) or not recipients or len(recipients) > MAX_EVENTS:
        raise PayloadError(f"An SES {kind.lower()} names its recipients (1 to {MAX_EVENTS}).")
    feedback_id = text(details.get("feedbackId"), 150) or text(message.get("MessageId"), 150)
    mail = fields(notification.get("mail"))
    evidence = raw.decode("utf-8", "replace")
    reports = []
    for recipient in map(fields, recipients):
        address = text(recipient.get("emailAddress"), 320)
        if not address:
            raise PayloadError("An SES recipient has no emailAddress.")
        reports.append(ProviderReport(
            source=SOURCE, event_id=f"{feedback_id}/{address.lower()}",
            kind=BounceKind.COMPLAINT if kind == "Complaint"
            else BOUNCE_KINDS.get(bounce_type, BounceKind.SOFT),
            recipient=address, reason=text(recipient.get("diagnosticCode")) or default,
            raw=evidence, status=text(recipient.get("status"), 20) or None,
            message_id=_message_id(mail),
            bounce_addresses=strings_in([mail.get("source"), *_headers(mail, "Return-Path")]),
        ))  # fmt: skip
    return reports


def _headers(mail: dict, name: str) -> list[str]:
    headers = mail.get("headers")
    if not isinstance(headers, list):
        return []
    return [text(fields(h).get("value"), 998) for h in headers
            if text(fields(h).get("name")).lower() == name.lower()]  # fmt: skip


def _message_id(mail: dict) -> str | None:
    """Our Message-ID, from the original headers SES includes (or its common headers)."""
    found = _headers(mail, "Message-ID")
    return our_message_id(found[0] if found else fields(mail.get("commonHeaders")).get("messageId"))
