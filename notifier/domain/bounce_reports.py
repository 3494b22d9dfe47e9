"""Read a message that came back to a bounce address: what kind of report it is, which
recipient and status it names, and where the original message (our headers) sits in it.

Pure parsing with the stdlib email package: no database, no rules. RFC 3464 delivery status
notifications and RFC 5965 (ARF) feedback reports are read from their machine-readable
parts; auto-replies are recognised by their headers (RFC 3834 Auto-Submitted, X-Autoreply,
Precedence) and subjects, so a holiday notice never counts as a bounce. Anything else is
unrelated mail, reported as such and never acted on.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import re
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser, HeaderParser

from notifier.models import BounceKind
from notifier.text import single_line

_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_SMTP_CODE = re.compile(r"\b([45])\d\d\b")
# Subjects of auto-replies in the languages our readers write in (and the big providers').
_AUTO_REPLY_SUBJECT = re.compile(
    r"^\s*(auto(matic)?[ -]?(reply|response|antwort)|out of (the )?office|abwesenheit|"
    r"vacation|on holiday|away from|r[ée]ponse automatique|absence|avtomatik cavab|"
    r"автоответ|отпуск|i am away|i'm away)",
    re.IGNORECASE,
)
# Subjects of the plain-text bounces some servers still send instead of a DSN.
_BOUNCE_SUBJECT = re.compile(
    r"(undeliver|undelivered|delivery (status notification|failure|has failed)|"
    r"failure notice|returned mail|mail delivery (failed|failure|subsystem)|"
    r"could not be delivered|non[- ]?delivery)",
    re.IGNORECASE,
)
_MAILER = re.compile(r"mailer-daemon|postmaster|mail delivery", re.IGNORECASE)
_COMPLAINT_TYPES = {"abuse", "fraud", "virus", "other", "complaint"}
_REASON_CHARS = 500


@dataclass(frozen=True)
class ReadReport:
    """What a returned message says, before any rule applies to it."""

    kind: BounceKind
    reason: str  # the server's diagnostic, or why the message is ignored
    recipient: str | None = None  # the address the report is about
    status: str | None = None  # RFC 3463 enhanced status code
    original: Message | None = None  # headers of our message it returned, if it quotes them


def read_report(raw: bytes) -> ReadReport:
    """Classify one returned message (never raises on malformed input: that is unrelated)."""
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    # An RFC 2231 parameter comes as a (charset, language, value) tuple: its value counts.
    param = message.get_param("report-type", header="content-type")
    report_type = email.utils.collapse_rfc2231_value(param).lower() if param else ""
    if message.get_content_type() == "multipart/report" and report_type == "delivery-status":
        return _delivery_status(message)
    if message.get_content_type() == "multipart/report" and report_type == "feedback-report":
        return _feedback_report(message)
    if _looks_like_plain_bounce(message):  # before auto-replies: bounces say auto-replied too
        return _plain_bounce(message)
    if is_auto_reply(message):
        return ReadReport(BounceKind.AUTO_REPLY, "an automatic reply (holiday, out of office)")
    return ReadReport(BounceKind.UNRELATED, "not a delivery report, complaint or auto-reply")


def is_auto_reply(message: Message) -> bool:
    """RFC 3834 and the headers providers use instead; the subject as a last resort."""
    auto_submitted = _header(message, "Auto-Submitted").lower()
    if auto_submitted and auto_submitted != "no":
        return True
    if any(message.get(name) for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponder")):
        return True
    if _header(message, "Precedence").lower() in ("auto_reply", "auto-reply"):
        return True
    if _header(message, "X-Auto-Response-Suppress") and _AUTO_REPLY_SUBJECT.search(
        _header(message, "Subject")
    ):
        return True
    return bool(_AUTO_REPLY_SUBJECT.search(_header(message, "Subject")))


def _delivery_status(message: Message) -> ReadReport:
    status_part = _part(message, "message/delivery-status")
    original = _original(message)
    if status_part is None:
        return _plain_bounce(message)
    for fields in _recipient_blocks(status_part):
        action = _header(fields, "Action").lower()
        status = _status_code(_header(fields, "Status")) or _status_code(
            _header(fields, "Diagnostic-Code")
        )
        recipient = _address(_header(fields, "Final-Recipient")) or _address(
            _header(fields, "Original-Recipient")
        )
        diagnostic = _header(fields, "Diagnostic-Code") or f"status {status or 'unknown'}"
        if action in ("delivered", "relayed", "expanded"):
            continue
        if action == "delayed":
            return ReadReport(BounceKind.DELAY, _reason(diagnostic), recipient, status, original)
        return ReadReport(_kind_of(status), _reason(diagnostic), recipient, status, original)
    return ReadReport(
        BounceKind.UNRELATED, "a delivery report that names no failed recipient", None, None,
        original,
    )  # fmt: skip


def _kind_of(status: str | None) -> BounceKind:
    """5.x.x is for good, except a full mailbox (x.2.2) and a refusal by policy (x.7.x):
    those are about this message or our reputation, not the reader's address."""
    if status is None or not status.startswith("5."):
        return BounceKind.SOFT
    _, subject, detail = status.split(".")
    if (subject, detail) == ("2", "2") or subject == "7":
        return BounceKind.SOFT
    return BounceKind.HARD


def _feedback_report(message: Message) -> ReadReport:
    part = _part(message, "message/feedback-report")
    fields = _fields_of(part) if part is not None else Message()
    feedback_type = _header(fields, "Feedback-Type").lower() or "abuse"
    original = _original(message)
    recipient = _address(_header(fields, "Original-Rcpt-To"))
    if recipient is None and original is not None:
        recipient = _address(_header(original, "To"))
    if feedback_type not in _COMPLAINT_TYPES:
        return ReadReport(BounceKind.UNRELATED, f"feedback report of type {feedback_type!r}",
                          recipient, None, original)  # fmt: skip
    source = _header(fields, "User-Agent") or _header(fields, "Reporting-MTA") or "a provider"
    return ReadReport(BounceKind.COMPLAINT,
                      _reason(f"spam complaint ({feedback_type}) reported by {source}"),
                      recipient, None, original)  # fmt: skip


def _looks_like_plain_bounce(message: Message) -> bool:
    sender = _header(message, "From")
    return bool(_BOUNCE_SUBJECT.search(_header(message, "Subject"))) and bool(
        _MAILER.search(sender) or not _header(message, "Return-Path").strip("<> ")
    )


def _plain_bounce(message: Message) -> ReadReport:
    """A bounce without a machine-readable status (qmail, old Exim, Yahoo's own): the first
    enhanced status code in its text, else its SMTP reply code."""
    text = _text_of(message)
    original = _original(message) or _quoted_headers(text)
    found = _STATUS.search(text)
    status: str | None
    if found:
        status = found.group(0)
    else:
        code = _SMTP_CODE.search(text)
        status = f"{code.group(1)}.0.0" if code else None
    line = next((ln for ln in text.splitlines() if status and status[0] in ln and ln.strip()), "")
    first = _first_address(text)
    recipient = first.lower() if first else None
    if status is None:
        return ReadReport(BounceKind.UNRELATED, "a bounce notice without any status code",
                          recipient, None, original)  # fmt: skip
    return ReadReport(_kind_of(status), _reason(line or text), recipient, status, original)


_QUOTED_START = re.compile(r"^(return-path|received):", re.IGNORECASE | re.MULTILINE)


def _quoted_headers(text: str) -> Message | None:
    """The copy of our message a plain-text bounce quotes after its explanation."""
    found = _QUOTED_START.search(text)
    return HeaderParser().parsestr(text[found.start() :]) if found else None


def _part(message: Message, content_type: str) -> Message | None:
    return next((p for p in message.walk() if p.get_content_type() == content_type), None)


def _recipient_blocks(part: Message) -> list[Message]:
    """The per-recipient field groups of a message/delivery-status part (the first group is
    about the message as a whole)."""
    payload = part.get_payload()
    if isinstance(payload, list) and payload:
        blocks = [block for block in payload if isinstance(block, Message)]
        return [block for block in payload[1:] if isinstance(block, Message)] or blocks
    text = payload if isinstance(payload, str) else ""
    groups = [g for g in re.split(r"\r?\n\s*\r?\n", text.strip()) if g.strip()]
    return [HeaderParser().parsestr(g) for g in groups[1:] or groups]


def _fields_of(part: Message) -> Message:
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return payload[0]
    return HeaderParser().parsestr(payload if isinstance(payload, str) else "")


def _original(message: Message) -> Message | None:
    """Our message as the report quotes it: a message/rfc822 part or its headers alone."""
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
        if kind == "text/rfc822-headers":
            data = part.get_payload(decode=True)
            return BytesHeaderParser().parsebytes(data if isinstance(data, bytes) else b"")
    return None


def _text_of(message: Message) -> str:
    texts = []
    for part in message.walk():
        if part.get_content_maintype() == "text" and part.get_content_subtype() != "html":
            data = part.get_payload(decode=True)
            if isinstance(data, bytes):
                texts.append(data.decode(part.get_content_charset() or "utf-8", "replace"))
    return "\n".join(texts)


def _header(message: Message, name: str) -> str:
    value = message.get(name)
    return single_line(str(value)).strip() if value is not None else ""


def _status_code(text: str) -> str | None:
    found = _STATUS.search(text)
    return found.group(0) if found else None


def _address(field: str) -> str | None:
    """ "rfc822; ann@example.com" or "<ann@example.com>" -> ann@example.com"""
    value = field.split(";", 1)[-1].strip().strip("<>").strip()
    if "@" not in value or " " in value:
        found = _first_address(field)
        return found.lower() if found else None
    return value.lower()


def _first_address(text: str) -> str | None:
    found = re.search(r"<?([^\s<>@;:\"]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,})>?", text)
    return found.group(1) if found else None


def _reason(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 1] + "…"
