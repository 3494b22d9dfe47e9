"""The one bounce processor: a message returned to us (from the listener, a mailbox or a
provider) is tied to its delivery, kept as evidence, and applied to the reader.

Hard bounces count toward EMAIL_BOUNCE_LIMIT together with the refusals seen at send time;
soft ones suppress only when they come on SOFT_BOUNCE_DAYS different days within
SOFT_BOUNCE_WINDOW_DAYS; a complaint stops all email at once and drops every category.
Auto-replies, delay warnings and unrelated mail are kept and never acted on, and neither is
a report that names no delivery of ours (anybody can mail a made-up bounce).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import Message

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from notifier.domain.bounce_reports import ReadReport, read_report
from notifier.domain.deliveries import count_hard_bounces
from notifier.domain.suppressions import suppress
from notifier.models import (
    BounceKind,
    BounceReport,
    Delivery,
    DeliveryOutcome,
    DeliveryStatus,
    Subscriber,
    SuppressionReason,
)
from notifier.sql import rows_changed
from notifier.tokens import BounceAddresses, TokenError

MAX_ROW_ID = 2**63 - 1  # deliveries.id is a BIGINT column (64-bit INTEGER on SQLite)
_OUR_MESSAGE_ID = re.compile(r"<[a-z]+\d+\.d(\d+)@([^>]+)>", re.IGNORECASE)


@dataclass(frozen=True)
class BouncePolicy:
    hard_limit: int  # EMAIL_BOUNCE_LIMIT
    soft_days: int  # SOFT_BOUNCE_DAYS
    soft_window_days: int  # SOFT_BOUNCE_WINDOW_DAYS
    message_id_domain: str  # our Message-IDs end in @ this (the MAIL_FROM domain)


@dataclass(frozen=True)
class Processed:
    report_id: int
    kind: BounceKind
    delivery_id: int | None
    suppressed: bool = False
    replay: bool = False  # the same report came before: nothing applied twice


def process_report(
    session: Session,
    raw: bytes,
    source: str,
    now: datetime,
    policy: BouncePolicy,
    addresses: BounceAddresses | None,
    envelope_recipients: tuple[str, ...] = (),
) -> Processed:
    """Read, tie, keep and apply one returned message. The caller commits."""
    digest = hashlib.sha256(raw).hexdigest()
    seen = session.scalar(select(BounceReport).where(BounceReport.digest == digest))
    if seen is not None:
        return Processed(seen.id, seen.kind, seen.delivery_id, replay=True)
    read = read_report(raw)
    delivery = _delivery_named(session, read, addresses, envelope_recipients, policy)
    return _keep_and_apply(session, read, source, digest, raw.decode("utf-8", "replace"), None,
                           delivery, now, policy)  # fmt: skip


@dataclass(frozen=True)
class ProviderReport:
    """A bounce or complaint a relay's webhook reported (SES, Postmark, SendGrid, Mailgun),
    already read from its payload: the second way into the same processor."""

    source: str  # "ses", "postmark", "sendgrid", "mailgun"
    event_id: str  # the relay's id of this event: the same event posted again is a replay
    kind: BounceKind
    recipient: str
    reason: str  # the relay's diagnostic, or what it says of the complaint
    raw: str  # the payload as it came: the evidence, kept like a returned message
    status: str | None = None  # RFC 3463 code when the relay gives one
    message_id: str | None = None  # the Message-ID of our email, when the relay echoes it
    # Fields where the relay echoes an envelope sender or a value of ours: a signed bounce
    # address (VERP) among them names the delivery.
    bounce_addresses: tuple[str, ...] = ()


def process_provider_report(
    session: Session,
    report: ProviderReport,
    now: datetime,
    policy: BouncePolicy,
    addresses: BounceAddresses | None,
) -> Processed:
    """Tie, keep and apply one event a relay reported, as process_report does a returned
    message; an event id seen before from the same relay changes nothing. The caller commits
    (a replay racing this one fails on the unique event id and is then seen as a replay)."""
    event_id = report.event_id[:200]
    seen = session.scalar(
        select(BounceReport).where(
            BounceReport.source == report.source, BounceReport.event_id == event_id
        )
    )
    if seen is not None:
        return Processed(seen.id, seen.kind, seen.delivery_id, replay=True)
    original = Message()
    if report.message_id:
        original["Message-ID"] = report.message_id
    read = ReadReport(report.kind, _short(report.reason), report.recipient.strip().lower(),
                      report.status, original)  # fmt: skip
    delivery = _delivery_named(session, read, addresses, report.bounce_addresses, policy)
    digest = hashlib.sha256(f"{report.source}\n{event_id}".encode()).hexdigest()
    return _keep_and_apply(session, read, report.source, digest, report.raw, event_id, delivery,
                           now, policy)  # fmt: skip


def _short(text: str, limit: int = 500) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _keep_and_apply(
    session: Session, read: ReadReport, source: str, digest: str, raw: str,
    event_id: str | None, delivery: Delivery | None, now: datetime, policy: BouncePolicy,
) -> Processed:  # fmt: skip
    report = BounceReport(
        received_at=now, source=source, event_id=event_id, kind=read.kind,
        recipient=read.recipient, status=read.status, reason=read.reason, digest=digest,
        raw=raw,
        delivery_id=delivery.id if delivery else None,
        subscriber_id=delivery.subscriber_id if delivery else None,
    )  # fmt: skip
    session.add(report)
    session.flush()
    suppressed = False
    if delivery is not None and delivery.subscriber_id is not None:
        suppressed = _apply(session, report, delivery, now, policy)
    return Processed(report.id, report.kind, report.delivery_id, suppressed)


def _delivery_named(
    session: Session,
    read: ReadReport,
    addresses: BounceAddresses | None,
    envelope_recipients: tuple[str, ...],
    policy: BouncePolicy,
) -> Delivery | None:
    """The delivery this report is about: its signed bounce address (where the report was
    sent, or the Return-Path of our message it quotes), else our Message-ID in the quoted
    message when the report's recipient is that delivery's reader."""
    candidates = list(envelope_recipients)
    if read.original is not None:
        candidates += [str(read.original.get(h, "")) for h in ("Return-Path", "X-Original-From")]
    if addresses is not None:
        for candidate in candidates:
            try:
                delivery_id = addresses.delivery_id(candidate)
            except TokenError:
                continue
            delivery = session.get(Delivery, delivery_id)
            if delivery is not None and delivery.channel == "email":
                return delivery
    return _by_message_id(session, read, policy.message_id_domain)


def _by_message_id(session: Session, read: ReadReport, domain: str) -> Delivery | None:
    if read.original is None or read.recipient is None:
        return None
    found = _OUR_MESSAGE_ID.search(str(read.original.get("Message-ID", "")))
    if not found or found.group(2).lower() != domain.lower():
        return None
    delivery_id = int(found.group(1))
    if delivery_id > MAX_ROW_ID:  # not one of ours: no such row can exist
        return None
    delivery = session.get(Delivery, delivery_id)
    if delivery is None or delivery.channel != "email" or delivery.subscriber_id is None:
        return None
    subscriber = session.get(Subscriber, delivery.subscriber_id)
    same = subscriber is not None and subscriber.email.lower() == read.recipient.lower()
    return delivery if same else None


def _apply(
    session: Session, report: BounceReport, delivery: Delivery, now: datetime,
    policy: BouncePolicy,
) -> bool:  # fmt: skip
    """What the report does to the delivery and its reader; True if it suppressed them."""
    subscriber = session.get_one(Subscriber, delivery.subscriber_id)  # bounces are email's
    if report.kind == BounceKind.HARD:
        _mark(delivery, DeliveryOutcome.BOUNCED, f"bounced: {report.status} {report.reason}")
        session.flush()
        count = count_hard_bounces(session, subscriber.id)
        if count < policy.hard_limit:
            return False
        detail = f"{count} hard bounces, last: {report.status} {report.reason}"
        return suppress(session, subscriber, SuppressionReason.HARD_BOUNCES, report.source,
                        detail, now, report_id=report.id)  # fmt: skip
    if report.kind == BounceKind.SOFT:
        days = soft_bounce_days(session, subscriber, now, policy.soft_window_days)
        if days < policy.soft_days:
            return False
        detail = (f"soft bounces on {days} days within {policy.soft_window_days}, "
                  f"last: {report.status} {report.reason}")  # fmt: skip
        return suppress(session, subscriber, SuppressionReason.SOFT_BOUNCES, report.source,
                        detail, now, report_id=report.id)  # fmt: skip
    if report.kind == BounceKind.COMPLAINT:
        _mark(delivery, DeliveryOutcome.COMPLAINED, report.reason)
        return suppress(session, subscriber, SuppressionReason.COMPLAINT, report.source,
                        report.reason, now, report_id=report.id)  # fmt: skip
    return False


def _mark(delivery: Delivery, outcome: DeliveryOutcome, detail: str) -> None:
    """A sent delivery that came back: its outcome says so (only once it was sent)."""
    if delivery.status == DeliveryStatus.SENT:
        delivery.outcome = outcome
        delivery.last_error = detail


def soft_bounce_days(
    session: Session, subscriber: Subscriber, now: datetime, window_days: int
) -> int:
    """On how many different days this reader's mail came back for now, within the window
    (and since ops last lifted a suppression)."""
    since = now - timedelta(days=window_days)
    if subscriber.bounces_forgiven_at is not None:
        since = max(since, subscriber.bounces_forgiven_at)
    times = session.scalars(
        select(BounceReport.received_at).where(
            BounceReport.subscriber_id == subscriber.id,
            BounceReport.kind == BounceKind.SOFT,
            BounceReport.received_at > since,
        )
    )
    return len({moment.date() for moment in times})


def drop_old_raw_reports(session: Session, now: datetime, keep_days: int) -> int:
    """BOUNCE_REPORT_DAYS: the raw messages go, the summaries and suppressions stay."""
    result = session.execute(
        update(BounceReport)
        .where(BounceReport.received_at < now - timedelta(days=keep_days))
        .where(BounceReport.raw.is_not(None))
        .values(raw=None)
    )
    return rows_changed(result)


def report_counts(session: Session, since: datetime) -> dict[BounceKind, int]:
    rows = session.execute(
        select(BounceReport.kind, func.count())
        .where(BounceReport.received_at >= since)
        .group_by(BounceReport.kind)
    )
    return {kind: count for kind, count in rows}
