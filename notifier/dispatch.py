"""Send a batch of deliveries: claim, address, send through one session per channel, record.

Messages are composed as the channel pulls them and sent several at a time; outcomes are
written in groups of DELIVERY_RECORD_BATCH, one statement per outcome kind. A worker that
dies can have sent at most that many messages (plus those in flight) that are not yet
marked sent: the price of not committing once per message.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

from notifier import metrics
from notifier.channels.base import Channel, Outcome, SendResult
from notifier.config import Settings
from notifier.domain.addressing import Unwanted
from notifier.domain.claims import (
    claim_deliveries,
    mark_sent,
    mark_skipped,
    not_yet_due,
    renew_leases,
)
from notifier.domain.deliveries import RetryPolicy, apply_outcome
from notifier.domain.sql import among
from notifier.logs import redact
from notifier.models import Delivery
from notifier.timeutil import utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outgoing:
    """A delivery cleared to go: its message is made when the channel asks for it."""

    delivery_id: int
    make: Callable[[], object]
    since: datetime | None = None  # when the reader's wait began (latency metric)


@dataclass(frozen=True)
class Outlet:
    """A channel bound to deliveries: who a chunk goes to, and what 'gone' means."""

    channel: Channel
    address: Callable[[Session, list[int]], list[Outgoing | Unwanted]]
    recipient_gone: Callable[[Session, Delivery, str, datetime], None]


@dataclass
class BatchReport:
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    fenced: int = 0  # outcomes not recorded: the rows had been handed to another worker
    retry_in: dict[int, float] = field(default_factory=dict)  # delivery id -> seconds
    # Each row to try again (a retry, or a row this task got before it was due) -> when.
    due_at: dict[int, datetime] = field(default_factory=dict)


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(
        settings.delivery_max_attempts,
        settings.delivery_retry_base_seconds,
        settings.delivery_retry_max_seconds,
        timedelta(seconds=settings.delivery_max_age_seconds),
        settings.retry_after_max_seconds,
        settings.retry_after_jitter_seconds,
    )


def send_deliveries(
    session: Session,
    delivery_ids: Sequence[int],
    outlets: Mapping[str, Outlet],
    settings: Settings,
    now: Callable[[], datetime] = utcnow,
    holder: str | None = None,
) -> BatchReport:
    """Claim, send and record a batch. `holder` names this worker process on the claims, so
    they are handed over at once if it dies (see notifier.takeover)."""
    report = BatchReport()
    claimed_at = now()
    token = uuid.uuid4().hex
    claimed = claim_deliveries(session, delivery_ids, claimed_at, settings.delivery_lease_seconds,
                               token, holder)  # fmt: skip
    session.commit()
    report.due_at.update(not_yet_due(session, set(delivery_ids) - set(claimed), claimed_at))
    if not claimed:
        return report
    lease = Lease(claimed, claimed_at, settings.delivery_lease_seconds, token)
    rows = session.execute(
        select(Delivery.channel, Delivery.id).where(among(session, Delivery.id, claimed))
    )
    by_channel: dict[str, list[int]] = {}
    for channel, delivery_id in rows:
        by_channel.setdefault(channel, []).append(delivery_id)
    for channel, ids in by_channel.items():
        recorder = Recorder(session, channel, outlets[channel], retry_policy(settings), now,
                            lease, settings.delivery_record_batch, report)  # fmt: skip
        _send_through(session, sorted(ids), outlets[channel], recorder, lease, now)
    return report


class Lease:
    """The rows this batch holds, renewed before they run out: a batch slower than its lease
    keeps its rows, and a row another worker took after our lease lapsed is not sent twice."""

    def __init__(self, ids: Sequence[int], claimed_at: datetime, seconds: int,
                 token: str | None = None) -> None:  # fmt: skip
        self.ids = set(ids)
        self.seconds = seconds
        self.until = claimed_at + timedelta(seconds=seconds)
        self.token = token  # the claim's fence: recording only touches rows still carrying it

    def holds(self, session: Session, delivery_id: int, now: datetime) -> bool:
        if now >= self.until - timedelta(seconds=self.seconds / 3):
            kept, self.until = renew_leases(session, sorted(self.ids), self.until, now,
                                            self.seconds, self.token)  # fmt: skip
            session.commit()
            self.ids = set(kept)
        return delivery_id in self.ids and now < self.until

    def release(self, delivery_id: int) -> None:
        self.ids.discard(delivery_id)


def _send_through(
    session: Session,
    ids: list[int],
    outlet: Outlet,
    recorder: Recorder,
    lease: Lease,
    now: Callable[[], datetime],
) -> None:
    entries = outlet.address(session, ids)
    since = {e.delivery_id: e.since for e in entries if isinstance(e, Outgoing)}
    recorder.since = since

    def messages() -> Iterator[tuple[int, object]]:
        for entry in entries:
            if isinstance(entry, Unwanted):
                recorder.skip(entry.delivery_id, entry.reason)
            elif lease.holds(session, entry.delivery_id, now()):
                yield entry.delivery_id, entry.make()
            # else: another worker holds it now

    connection = outlet.channel.open()
    try:
        send_many = getattr(connection, "send_many", None) or _one_by_one(connection)
        for delivery_id, result in send_many(messages()):
            recorder.add(delivery_id, result)
    except BaseException:
        # Record what went out before the error, but never let a failure to do so replace
        # the error: a SystemExit (the pool child told to stop) must end the process, so
        # its claims are taken over, not swallowed by the session it interrupted.
        try:
            recorder.flush()
        except Exception:
            log.exception("outcomes of a failed batch not recorded; its claims are taken "
                          "over or expire")  # fmt: skip
        raise
    else:
        recorder.flush()
    finally:
        connection.close()


def _one_by_one(connection):
    """For a channel session that sends one message at a time."""

    def send_many(messages):
        for key, message in messages:
            yield key, connection.send(message)

    return send_many


class Recorder:
    """Writes outcomes in groups: every sent message of a group in one statement, skips by
    reason, and the rare retry/failure one by one (they carry their own reason and delay)."""

    def __init__(
        self,
        session: Session,
        channel: str,
        outlet: Outlet,
        policy: RetryPolicy,
        now: Callable[[], datetime],
        lease: Lease,
        batch_size: int,
        report: BatchReport,
    ) -> None:
        self.session, self.channel, self.outlet, self.policy = session, channel, outlet, policy
        self.now, self.lease, self.batch_size, self.report = now, lease, batch_size, report
        self.since: dict[int, datetime | None] = {}
        self.sent: list[int] = []
        self.skipped: dict[str, list[int]] = defaultdict(list)
        self.others: list[tuple[int, SendResult]] = []
        self.waiting = 0
        self.recorded = 0  # sent rows the last flush recorded (the rest were taken over)

    def add(self, delivery_id: int, result: SendResult) -> None:
        if result.outcome is Outcome.SENT:
            self.sent.append(delivery_id)
        else:
            self.others.append((delivery_id, result))
        self._count()

    def skip(self, delivery_id: int, reason: str) -> None:
        self.skipped[reason].append(delivery_id)
        self._count()

    def _count(self) -> None:
        self.waiting += 1
        if self.waiting >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        """Commit what happened. The messages are out, so a database blip must not lose that
        fact (they would be sent again after the lease): keep trying while the lease holds,
        then give up loudly."""
        if not self.waiting:
            return
        pause = 0.2
        while True:
            try:
                at = self.now()
                finals = self._write(at)
                self.session.commit()
                break
            except (OperationalError, InterfaceError) as error:
                self.session.rollback()
                if self.now() + timedelta(seconds=pause) >= self.lease.until:
                    raise
                log.warning("database unavailable while recording %s outcomes (%s); retrying",
                            self.waiting, type(error).__name__)  # fmt: skip
                time.sleep(pause)
                pause = min(pause * 2, 5.0)
        self._count_outcomes(at, finals)
        for delivery_id in [*self.sent, *(i for ids in self.skipped.values() for i in ids),
                            *(i for i, _ in self.others)]:  # fmt: skip
            self.lease.release(delivery_id)
        self.sent, self.skipped, self.others, self.waiting = [], defaultdict(list), [], 0

    def _write(self, at: datetime) -> list[Delivery]:
        token = self.lease.token
        self.recorded = 0
        if self.sent:
            recorded = self.recorded = mark_sent(self.session, self.sent, at, token)
            if recorded < len(self.sent):  # taken over while we sent: the new holder records
                self.report.fenced += len(self.sent) - recorded
                log.warning("%s of %s sent deliveries were taken over before they were recorded "
                            "(this worker was thought dead); they may go twice",
                            len(self.sent) - recorded, len(self.sent))  # fmt: skip
        for reason, ids in self.skipped.items():
            mark_skipped(self.session, ids, reason, token)
        finals = []
        for delivery_id, result in self.others:
            delivery = self.session.get(Delivery, delivery_id)
            if token is not None and delivery.claim_token != token:
                self.report.fenced += 1
                continue
            delay = apply_outcome(self.session, delivery, result, at, self.policy)
            if result.outcome is Outcome.GONE:
                self.outlet.recipient_gone(self.session, delivery, result.detail, at)
            if delay is not None:
                self.report.retry_in[delivery_id] = delay
                self.report.due_at[delivery_id] = delivery.next_attempt_at
            finals.append(delivery)
        return finals

    def _count_outcomes(self, at: datetime, finals: list[Delivery]) -> None:
        self.report.sent += self.recorded
        skipped = sum(len(ids) for ids in self.skipped.values())
        self.report.skipped += skipped
        metrics.deliveries_counted(self.channel, "sent", self.recorded)
        metrics.deliveries_counted(self.channel, "skipped", skipped)
        metrics.latencies_observed(
            self.channel,
            [(at - since).total_seconds() for i in self.sent if (since := self.since.get(i))],
        )
        for delivery in finals:
            metrics.delivery_recorded(self.session, delivery)
            if delivery.id not in self.report.retry_in:
                self.report.failed += 1
                log.warning("delivery %s failed: %s", delivery.id,
                            redact(delivery.last_error or ""),
                            extra=log_context(delivery))  # fmt: skip


def log_context(delivery: Delivery) -> dict[str, object]:
    """Ids for a log record about a delivery (never its address or endpoint)."""
    return {
        "delivery_id": delivery.id,
        "channel": delivery.channel,
        "article_id": delivery.article_id,
        "alert_id": delivery.alert_id,
        "subscriber_id": delivery.subscriber_id,
        "push_subscription_id": delivery.push_subscription_id,
    }
