"""Returned messages in the shapes real servers send, with the reader, our bounce address and
our Message-ID filled in, and what each one is expected to be."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from notifier.models import BounceKind

CORPUS_DIR = Path(__file__).parent / "corpus"


@dataclass(frozen=True)
class Expected:
    kind: BounceKind
    status: str | None  # the RFC 3463 code it names (None: none)
    sender: str  # whose shape it is


CORPUS: dict[str, Expected] = {
    "postfix_user_unknown.eml": Expected(BounceKind.HARD, "5.1.1", "Postfix"),
    "postfix_delayed.eml": Expected(BounceKind.DELAY, "4.4.1", "Postfix"),
    "postfix_policy_reject.eml": Expected(BounceKind.SOFT, "5.7.1", "Postfix"),
    "exim_plain_no_such_user.eml": Expected(BounceKind.HARD, "5.1.1", "Exim"),
    "exim_dsn_mailbox_full.eml": Expected(BounceKind.SOFT, "5.2.2", "Exim"),
    "gmail_user_unknown.eml": Expected(BounceKind.HARD, "5.1.1", "Gmail"),
    "microsoft_recipient_not_found.eml": Expected(BounceKind.HARD, "5.1.10", "Microsoft"),
    "microsoft_jmrp_complaint.eml": Expected(BounceKind.COMPLAINT, None, "Microsoft"),
    "yahoo_plain_failure.eml": Expected(BounceKind.HARD, "5.0.0", "Yahoo"),
    "yahoo_arf_complaint.eml": Expected(BounceKind.COMPLAINT, None, "Yahoo"),
    "ses_bounce.eml": Expected(BounceKind.HARD, "5.1.1", "Amazon SES"),
    "ses_complaint_arf.eml": Expected(BounceKind.COMPLAINT, None, "Amazon SES"),
    "vacation_rfc3834.eml": Expected(BounceKind.AUTO_REPLY, None, "RFC 3834 vacation"),
    "outlook_automatic_reply.eml": Expected(BounceKind.AUTO_REPLY, None, "Outlook"),
    "abwesenheit_x_autoreply.eml": Expected(BounceKind.AUTO_REPLY, None, "X-Autoreply"),
    "unrelated_reader_reply.eml": Expected(BounceKind.UNRELATED, None, "a reader"),
    "unrelated_newsletter.eml": Expected(BounceKind.UNRELATED, None, "a shop"),
}


def load(name: str, to: str, verp: str, message_id: str) -> bytes:
    text = (CORPUS_DIR / name).read_text(encoding="utf-8")
    for slot, value in (("%%TO%%", to), ("%%VERP%%", verp), ("%%MESSAGE_ID%%", message_id)):
        text = text.replace(slot, value)
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")
