"""The retention job (beat, every RETENTION_SECONDS; `notifier retention` by hand): remove
finished deliveries older than DELIVERY_RETENTION_DAYS a batch at a time, each batch counted
into the summary table and committed on its own, with a pause between batches, and record the
run (rows removed, duration, the error if it failed) for /ops/, `notifier status` and /metrics.

News comes first: while messages that became due in the last RETENTION_YIELD_SECONDS are
waiting or being sent (a fan-out, a digest morning) a run waits, looking again every
RETENTION_BUSY_CHECK_SECONDS, for at most RETENTION_YIELD_SECONDS of its time (so news that
never ends, or a stuck row, cannot starve it); housekeeping takes the quiet moments.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta

from notifier.config import Settings
from notifier.db import session_scope
from notifier.domain.retention import Position, messages_going_out, remove_batch
from notifier.models import RetentionRun
from notifier.timeutil import utcnow

log = logging.getLogger(__name__)


def run_retention(
    settings: Settings,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> RetentionRun:
    """One run, until nothing old is left or RETENTION_RUN_SECONDS passed. A failure is
    recorded on the run with its cause, then raised (the task or command reports it too)."""
    started = utcnow()
    cutoff = started - timedelta(days=settings.delivery_retention_days)
    began = clock()
    deadline = began + settings.retention_run_seconds
    yield_until = began + settings.retention_yield_seconds
    yielding, waited = True, 0.0  # no longer yielding once its yield time is used up
    with session_scope(settings.database_url) as session:
        run = RetentionRun(started_at=started, cutoff=cutoff, removed=0, batches=0,
                           complete=False)  # fmt: skip
        session.add(run)
        session.commit()
        position: Position | None = None
        try:
            while True:
                now = utcnow()
                recent = now - timedelta(seconds=settings.retention_yield_seconds)
                if yielding and messages_going_out(session, now, recent):
                    session.rollback()  # no snapshot held while we wait
                    sleep(settings.retention_busy_check_seconds)
                    waited += settings.retention_busy_check_seconds
                    at = clock()
                    if at >= deadline:
                        break
                    yielding = at < yield_until
                    continue
                batch = remove_batch(session, cutoff, settings.retention_batch_size, position)
                run.removed += batch.removed
                run.batches += 1
                session.commit()
                if batch.removed < settings.retention_batch_size:
                    run.complete = True
                    break
                position = batch.position
                if clock() >= deadline:
                    break
                sleep(settings.retention_batch_pause_seconds)
        except Exception as error:  # recorded with its cause, then raised: never silent
            session.rollback()
            run.error = f"{type(error).__name__}: {error}"[:2000]
            run.finished_at = utcnow()
            session.commit()
            log.error("retention stopped after removing %s deliveries: %s", run.removed,
                      run.error)  # fmt: skip
            raise
        run.finished_at = utcnow()
        session.commit()
        session.refresh(run)
        session.expunge(run)
    log.info("retention removed %s deliveries planned before %s in %s batches%s%s",
             run.removed, cutoff.isoformat(), run.batches,
             f", after waiting {waited:.0f} s for messages going out" if waited else "",
             "" if run.complete else " (time ran out; the next run goes on)")  # fmt: skip
    return run
