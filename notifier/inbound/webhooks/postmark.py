"""Postmark's bounce and spam-complaint webhooks. Postmark signs nothing: the webhook URL
carries the secret, either as HTTP basic auth (https://user:TOKEN@host/...) or as the last
part of its path, and both are compared with POSTMARK_WEBHOOK_TOKEN.

Postmark's bounce types map to ours: a hard bounce or a bad address is hard; transient
failures, DNS errors, blocks by policy and spam filtering are soft (they count over days);
a spam complaint stops all email; an auto-responder is ignored, like the listener ignores a
holiday notice; the rest (subscribe requests, address changes, ...) are kept and not acted on.
"""

from __future__ import annotations

from notifier.domain.bounce_reports import read_report
from notifier.domain.bounces import ProviderReport
from notifier.inbound.webhooks import (
    PayloadError,
    WebhookRefused,
    json_payload,
    our_message_id,
    same_secret,
    strings_in,
    text,
)
from notifier.models import BounceKind

SOURCE = "postmark"
KINDS = {
    "HardBounce": BounceKind.HARD,
    "BadEmailAddress": BounceKind.HARD,
    "SoftBounce": BounceKind.SOFT,
    "Transient": BounceKind.SOFT,
    "DnsError": BounceKind.SOFT,
    "Blocked": BounceKind.SOFT,  # refused by policy: about us or this message, not the address
    "DMARCPolicy": BounceKind.SOFT,
    "SpamNotification": BounceKind.SOFT,  # filtered as spam at the receiver, not a complaint
    "Unknown": BounceKind.SOFT,
    "SpamComplaint": BounceKind.COMPLAINT,
    "AutoResponder": BounceKind.AUTO_REPLY,
}  # anything else (Subscribe, AddressChange, ChallengeVerification, ...): kept, not acted on


def check_token(path_token: str | None, basic_password: str | None, expected: str) -> None:
    if path_token is None and basic_password is None:
        raise WebhookRefused(
            401, "Put POSTMARK_WEBHOOK_TOKEN in the webhook URL, as basic auth "
            "(https://postmark:TOKEN@host/...) or at the end of its path.",
        )  # fmt: skip
    if not (same_secret(path_token, expected) or same_secret(basic_password, expected)):
        raise WebhookRefused(403, "The token in the webhook URL is not POSTMARK_WEBHOOK_TOKEN.")


def read_events(raw: bytes) -> list[ProviderReport]:
    body = json_payload(raw)
    if not isinstance(body, dict):
        raise PayloadError("Send Postmark's bounce or spam complaint JSON object.")
    record = text(body.get("RecordType"))
    if record not in ("Bounce", "SpamComplaint"):
        return []  # delivery, open, click: not for this endpoint, nothing to do
    event_id, recipient = text(body.get("ID"), 100), text(body.get("Email"), 320)
    if not event_id or not recipient:
        raise PayloadError('A Postmark bounce needs its "ID" and "Email".')
    bounce_type = text(body.get("Type"), 40)
    kind = BounceKind.COMPLAINT if record == "SpamComplaint" else KINDS.get(bounce_type)
    content = body.get("Content")
    # With "include bounce content", the bounce itself comes along: its status code and the
    # copy of our message it quotes (the Message-ID that names the delivery) are read from it.
    quoted = read_report(content.encode("utf-8", "replace")) if isinstance(content, str) else None
    message_id = None
    if quoted is not None and quoted.original is not None:
        message_id = our_message_id(quoted.original.get("Message-ID"))
    metadata = body.get("Metadata")
    reason = " ".join(filter(None, (bounce_type, text(body.get("Details")),
                                    text(body.get("Description")))))  # fmt: skip
    return [ProviderReport(
        source=SOURCE, event_id=f"{record}:{event_id}", kind=kind or BounceKind.UNRELATED,
        recipient=recipient, reason=reason or f"Postmark: {record}",
        raw=raw.decode("utf-8", "replace"), status=quoted.status if quoted else None,
        message_id=message_id,
        bounce_addresses=strings_in(metadata.values() if isinstance(metadata, dict) else []),
    )]  # fmt: skip
