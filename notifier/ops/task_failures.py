"""Tasks that failed for good, kept with their cause: a confirmation email that never left,
a bug in a fan-out. Written by whichever worker ran the task; read by the dashboard,
`notifier status` and /metrics."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from notifier.db import session_scope
from notifier.logs import redact
from notifier.models import TaskFailure
from notifier.ops.failures import cause_of

log = logging.getLogger(__name__)
# "<x@y>" and "x@y" alike, as cause_of does, in linear time (errors quote what servers say).
_ADDRESS = re.compile(r"(?<![^\s@])[^\s@]++@\S++")


def describe(error: BaseException) -> str:
    """'SMTPRecipientsRefused: …' with addresses masked, one line, short."""
    text = _ADDRESS.sub("<address>", " ".join(str(error)[:2000].split()) or "(no message)")
    return redact(f"{type(error).__name__}: {text}")[:500]


def record_task_failure(
    database_url: str, task_name: str, task_id: str, error: BaseException, arguments: object,
    now: datetime,
) -> bool:  # fmt: skip
    """Keep the failure. When the database itself is what failed, the log line (ERROR) is
    what remains; False then."""
    try:
        text = redact(json.dumps(arguments, default=str))[:1000]
    except (TypeError, ValueError):
        text = "(not JSON)"
    try:
        with session_scope(database_url) as session:
            row = TaskFailure(task_name=task_name, task_id=task_id or "", cause=describe(error),
                              arguments=text, failed_at=now)  # fmt: skip
            session.add(row)
            session.commit()
    except SQLAlchemyError as db_error:
        log.error("task %s [%s] failed (%s) and the failure could not be recorded: %s",
                  task_name, task_id, describe(error), db_error)  # fmt: skip
        return False
    return True


@dataclass(frozen=True)
class TaskFailureGroup:
    task: str  # the short name: send_confirmation
    cause: str
    count: int
    last_at: datetime


def recent_task_failures(session: Session, now: datetime, seconds: int) -> list[TaskFailureGroup]:
    """Failures of the last `seconds`, grouped by task and cause (ids and addresses masked),
    the most frequent first."""
    rows = session.execute(
        select(TaskFailure.task_name, TaskFailure.cause, TaskFailure.failed_at)
        .where(TaskFailure.failed_at >= now - timedelta(seconds=seconds))
        .order_by(TaskFailure.id.desc())
        .limit(10_000)
    )
    groups: dict[tuple[str, str], list[datetime]] = {}
    for task_name, cause, failed_at in rows:
        key = (task_name.rpartition(".")[2], cause_of(cause))
        groups.setdefault(key, []).append(failed_at)
    result = [TaskFailureGroup(task, cause, len(times), max(times))
              for (task, cause), times in groups.items()]  # fmt: skip
    return sorted(result, key=lambda group: (-group.count, group.task))


def task_failures_by_task(session: Session, since: datetime) -> dict[str, int]:
    rows = session.execute(
        select(TaskFailure.task_name, func.count())
        .where(TaskFailure.failed_at >= since)
        .group_by(TaskFailure.task_name)
    )
    return {task_name.rpartition(".")[2]: count for task_name, count in rows}


def forget_task_failures(session: Session, before: datetime) -> None:
    session.execute(delete(TaskFailure).where(TaskFailure.failed_at < before))
