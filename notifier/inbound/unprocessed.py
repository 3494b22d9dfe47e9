"""Returned messages the listener or the mailbox reader could not process, kept with their
cause as task failures (task "listener" or "imap"), so they show in `notifier status`, /ops/
and /metrics like any work that did not happen. The sender still holds each message (the
listener answered 451; the reader left it in the mailbox) and it is tried again.

When the database is what failed, the failure cannot be written yet: it waits here (up to
a limit) and is written as soon as the database answers again."""

from __future__ import annotations

import hashlib
import logging
from collections import deque
from dataclasses import dataclass
from datetime import datetime

from notifier import metrics
from notifier.ops.task_failures import describe, record_task_failure

log = logging.getLogger(__name__)
TASK_NAME = "notifier.bounces.listener"
WAITING_LIMIT = 1000  # failures waiting for the database; older ones remain in the log only


@dataclass(frozen=True)
class Unprocessed:
    error: BaseException
    digest: str  # of the raw message: the same report retried by its sender is recognisable
    size: int
    recipients: int
    failed_at: datetime


class UnprocessedReports:
    def __init__(self, database_url: str, source: str = "listener",
                 task_name: str = TASK_NAME) -> None:  # fmt: skip
        self.database_url = database_url
        self.source = source
        self.task_name = task_name  # notifier.bounces.imap, .webhook_<relay>
        self.waiting: deque[Unprocessed] = deque(maxlen=WAITING_LIMIT)

    def add(self, error: BaseException, raw: bytes, recipients: int, cause: str,
            now: datetime) -> None:  # fmt: skip
        """Count it now, keep it when the database lets us (cause: database or error)."""
        metrics.bounce_report_unprocessed(self.source, cause)
        log.error("bounce report from %s not processed (%s): %s", self.source, cause,
                  describe(error))  # fmt: skip
        digest = hashlib.sha256(raw).hexdigest()
        self.waiting.append(Unprocessed(error, digest, len(raw), recipients, now))
        self.write_waiting()

    def write_waiting(self) -> None:
        """Write what waits, oldest first; stop at the first write the database refuses."""
        while self.waiting:
            item = self.waiting[0]
            arguments = {"source": self.source, "report_sha256": item.digest,
                         "bytes": item.size, "recipients": item.recipients}  # fmt: skip
            if not record_task_failure(self.database_url, self.task_name, item.digest[:64],
                                       item.error, arguments, item.failed_at):  # fmt: skip
                return
            self.waiting.popleft()
