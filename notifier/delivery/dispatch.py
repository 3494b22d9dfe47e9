"""Send a batch of deliveries: claim, address, compose as the channel pulls, send through
one session per channel, record; then queue what is to be tried again, and close the alerts
whose last delivery this was.

Messages are composed as the channel pulls them and sent several at a time; outcomes are
recorded in groups (notifier.delivery.recording).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Row
from sqlalchemy.orm import Session

from notifier.channels.base import Channel
from notifier.config import Settings
from notifier.delivery.addressing import Unwanted
from notifier.delivery.claims import Lease, claim_rows, not_yet_due
from notifier.delivery.holding import Held
from notifier.delivery.queueing import Enqueue, queue_when_due
from notifier.delivery.recording import BatchReport, OnGone, Recorder, retry_policy
from notifier.domain.alerts import finish_if_done
from notifier.domain.deliveries import alert_ids_of
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
    # The entries for these ids; the claim's rows of them (SENT_DELIVERY_COLUMNS) when known.
    address: Callable[[Session, list[int], Mapping[int, Row] | None],
                      list[Outgoing | Unwanted | Held]]  # fmt: skip
    recipient_gone: OnGone


def deliver(
    session: Session,
    delivery_ids: Sequence[int],
    outlets: Mapping[str, Outlet],
    settings: Settings,
    enqueue: Enqueue,
    holder: str | None = None,
) -> BatchReport:
    """What a send task does with its ids: send the batch, queue each retry (and each row
    that came before its time) for when it is due, finish alerts that are done, commit."""
    report = send_deliveries(session, delivery_ids, outlets, settings, holder=holder)
    queue_when_due(session, report.due_at, settings, enqueue, holder)
    alert_ids = set(report.alert_ids)
    if report.unclaimed:  # the claim told only its own rows' alerts
        alert_ids.update(alert_ids_of(session, report.unclaimed))
    for alert_id in sorted(alert_ids):
        finish_if_done(session, alert_id, utcnow())
    session.commit()
    return report


def send_deliveries(
    session: Session,
    delivery_ids: Sequence[int],
    outlets: Mapping[str, Outlet],
    settings: Settings,
    now: Callable[[], datetime] = utcnow,
    holder: str | None = None,
) -> BatchReport:
    """Claim, send and record a batch. `holder` names this worker process on the claims, so
    they are handed over at once if it dies (see notifier.delivery.takeover)."""
    report = BatchReport()
    claimed_at = now()
    token = uuid.uuid4().hex
    rows = claim_rows(session, delivery_ids, claimed_at, settings.delivery_lease_seconds, token,
                      holder)  # fmt: skip
    session.commit()
    claimed = [row.id for row in rows]
    report.alert_ids.update(row.alert_id for row in rows if row.alert_id is not None)
    report.unclaimed = sorted(set(delivery_ids) - set(claimed))
    report.due_at.update(not_yet_due(session, report.unclaimed, claimed_at))
    if not claimed:
        return report
    lease = Lease(claimed, claimed_at, settings.delivery_lease_seconds, token)
    by_channel: dict[str, dict[int, Row]] = {}
    for row in rows:  # in id order
        by_channel.setdefault(row.channel, {})[row.id] = row
    for channel, claimed_rows in by_channel.items():
        outlet = outlets[channel]
        recorder = Recorder(session, channel, outlet.recipient_gone, retry_policy(settings), now,
                            lease, settings.delivery_record_batch, report)  # fmt: skip
        _send_through(session, claimed_rows, outlet, recorder, lease, now)
    return report


def _send_through(
    session: Session,
    claimed: dict[int, Row],
    outlet: Outlet,
    recorder: Recorder,
    lease: Lease,
    now: Callable[[], datetime],
) -> None:
    entries = outlet.address(session, list(claimed), claimed)
    since = {e.delivery_id: e.since for e in entries if isinstance(e, Outgoing)}
    recorder.since = since

    def messages() -> Iterator[tuple[int, object]]:
        for entry in entries:
            if isinstance(entry, Unwanted):
                recorder.skip(entry.delivery_id, entry.reason)
            elif isinstance(entry, Held):
                recorder.hold(entry)
            elif lease.holds(session, entry.delivery_id, now()):
                yield entry.delivery_id, entry.make()
            # else: another worker holds it now

    connection = outlet.channel.open()
    try:
        for delivery_id, result in connection.send_many(messages()):
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
