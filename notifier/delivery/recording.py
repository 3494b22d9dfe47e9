"""Record what a channel said about each message: sent, skipped with its reason, to retry
when, failed, gone (and what gone means for the recipient). Every outcome is counted.

Outcomes are written in groups of DELIVERY_RECORD_BATCH, one statement per outcome kind. A
worker that dies can have sent at most that many messages (plus those in flight) that are
not yet marked sent: the price of not committing once per message.
"""

from __future__ import annotations

import logging
import random
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

from notifier import metrics
from notifier.config import Settings
from notifier.delivery.claims import Lease, mark_sent, mark_skipped
from notifier.delivery.holding import Held, mark_held
from notifier.logs import redact
from notifier.messages import Outcome, SendResult
from notifier.models import Delivery, DeliveryOutcome, DeliveryStatus

log = logging.getLogger(__name__)

FINAL_OUTCOMES = {Outcome.GONE: DeliveryOutcome.GONE, Outcome.FAILED: DeliveryOutcome.FAILED}

OnGone = Callable[[Session, Delivery, str, datetime], None]
"""What the domain does when a channel says the recipient is gone (see delivery.outlets)."""


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    base_seconds: float
    max_seconds: float
    max_age: timedelta = timedelta(days=1)  # a notification older than this is no news
    retry_after_max_seconds: float = 3600.0  # a longer (or absurd) Retry-After is cut to this
    retry_after_jitter_seconds: float = 1.0  # added to a Retry-After: never early, spread out

    def delay(self, attempts: int) -> float:
        """Exponential backoff with jitter: half fixed, half random, so retries spread out."""
        ceiling = min(self.max_seconds, self.base_seconds * 2 ** max(attempts - 1, 0))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def retry_delay(self, attempts: int, retry_after: float | None) -> float:
        """When to try again. The server's Retry-After is when it goes (plus a little jitter,
        never before); without one, exponential backoff from the base. From the third
        failure in a row the backoff grows under a Retry-After too, so a service that keeps
        refusing is asked less and less often and the attempts span minutes, not seconds."""
        if retry_after is None or not 0 <= retry_after < float("inf"):
            return self.delay(attempts)
        wait = min(retry_after, self.retry_after_max_seconds)
        wait += random.uniform(0, self.retry_after_jitter_seconds)
        return max(wait, self.delay(attempts - 2)) if attempts > 2 else wait


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(
        settings.delivery_max_attempts,
        settings.delivery_retry_base_seconds,
        settings.delivery_retry_max_seconds,
        timedelta(seconds=settings.delivery_max_age_seconds),
        settings.retry_after_max_seconds,
        settings.retry_after_jitter_seconds,
    )


@dataclass
class BatchReport:
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    held: int = 0  # held back on purpose (quiet hours), due again later
    fenced: int = 0  # outcomes not recorded: the rows had been handed to another worker
    retry_in: dict[int, float] = field(default_factory=dict)  # delivery id -> seconds
    # Each row to try again (a retry, or a row this task got before it was due) -> when.
    due_at: dict[int, datetime] = field(default_factory=dict)
    # The alerts the claimed rows belong to, and the ids not claimed (whose alerts the
    # claim did not tell): what the batch's end reads to finish the alerts that are done.
    alert_ids: set[int] = field(default_factory=set)
    unclaimed: list[int] = field(default_factory=list)


def apply_outcome(
    session: Session, delivery: Delivery, result: SendResult, now: datetime, policy: RetryPolicy
) -> float | None:
    """Record what the channel said. Returns seconds until a retry is due, or None if final."""
    delivery.lease_until = None
    delivery.claimed_by = delivery.claim_token = None
    if result.outcome is Outcome.SENT:
        delivery.status, delivery.outcome = DeliveryStatus.SENT, DeliveryOutcome.SENT
        delivery.sent_at = now
        delivery.last_error = None
        return None
    if result.outcome in (Outcome.GONE, Outcome.FAILED):
        delivery.status = DeliveryStatus.FAILED
        delivery.outcome = FINAL_OUTCOMES[result.outcome]
        delivery.last_error = f"{result.outcome.value}: {result.detail}"
        return None
    if not result.attempted:  # held back before any request: not a failed attempt
        delivery.attempts = max(0, delivery.attempts - 1)
        delay = policy.retry_delay(1, result.retry_after)
    else:
        delay = policy.retry_delay(delivery.attempts, result.retry_after)
    too_old = now + timedelta(seconds=delay) - delivery.created_at > policy.max_age
    if delivery.attempts >= policy.max_attempts or too_old:
        delivery.status, delivery.outcome = DeliveryStatus.FAILED, DeliveryOutcome.FAILED
        delivery.last_error = f"gave up after {delivery.attempts} attempts: {result.detail}"
        return None
    delivery.status, delivery.outcome = DeliveryStatus.PENDING, None
    delivery.next_attempt_at = now + timedelta(seconds=delay)
    delivery.last_error = f"temporary: {result.detail}"
    return delay


class Recorder:
    """Writes outcomes in groups: every sent message of a group in one statement, skips by
    reason, and the rare retry/failure one by one (they carry their own reason and delay)."""

    def __init__(
        self,
        session: Session,
        channel: str,
        on_gone: OnGone,
        policy: RetryPolicy,
        now: Callable[[], datetime],
        lease: Lease,
        batch_size: int,
        report: BatchReport,
    ) -> None:
        self.session, self.channel, self.on_gone, self.policy = session, channel, on_gone, policy
        self.now, self.lease, self.batch_size, self.report = now, lease, batch_size, report
        self.since: dict[int, datetime | None] = {}
        self.sent: list[int] = []
        self.skipped: dict[str, list[int]] = defaultdict(list)
        self.held: dict[tuple[datetime, str], list[int]] = defaultdict(list)
        self.others: list[tuple[int, SendResult]] = []
        self.waiting = 0
        self.recorded = 0  # sent rows the last flush recorded (the rest were taken over)
        self.held_recorded: dict[int, datetime] = {}  # held rows the last flush recorded

    def add(self, delivery_id: int, result: SendResult) -> None:
        if result.outcome is Outcome.SENT:
            self.sent.append(delivery_id)
        else:
            self.others.append((delivery_id, result))
        self._count()

    def skip(self, delivery_id: int, reason: str) -> None:
        self.skipped[reason].append(delivery_id)
        self._count()

    def hold(self, held: Held) -> None:
        """Not yet: due again at `held.until` (quiet hours), no attempt spent."""
        self.held[(held.until, held.reason)].append(held.delivery_id)
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
                            *(i for ids in self.held.values() for i in ids),
                            *(i for i, _ in self.others)]:  # fmt: skip
            self.lease.release(delivery_id)
        self.sent, self.skipped, self.others, self.waiting = [], defaultdict(list), [], 0
        self.held = defaultdict(list)

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
        self.held_recorded = {}
        for (until, reason), ids in self.held.items():
            for delivery_id in mark_held(self.session, ids, until, reason, token):
                self.held_recorded[delivery_id] = until
        finals = []
        for delivery_id, result in self.others:
            # Read afresh: the claim was a Core UPDATE, and sessions keep objects across
            # commits (expire_on_commit=False), so one loaded earlier would show an old token.
            delivery = self.session.get_one(Delivery, delivery_id, populate_existing=True)
            if token is not None and delivery.claim_token != token:
                self.report.fenced += 1
                continue
            delay = apply_outcome(self.session, delivery, result, at, self.policy)
            if result.outcome is Outcome.GONE:
                self.on_gone(self.session, delivery, result.detail, at)
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
        self.report.held += len(self.held_recorded)
        self.report.due_at.update(self.held_recorded)
        metrics.deliveries_counted(self.channel, "held", len(self.held_recorded))
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
