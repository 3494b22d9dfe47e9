"""Stale news is not sent late: an instant email or push for an article older than
STALE_NEWS_HOURS when it would go (after an outage, say) is skipped with the reason "stale".

A reader who also takes a daily or weekly digest gets the article there instead: the skip
leaves a digest leftover (in the transaction that records the skip), and the next digest
planned for that reader carries it and takes the leftover away, so it is in exactly one.

Only articles go stale. A breaking alert is news for its own hours (an editor sent it, its
push has its own short TTL and every delivery DELIVERY_MAX_AGE_SECONDS); a digest is late
news by design. An article's age counts from its published time, else from when we first
saw it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from notifier.delivery.addressing import Addressee, Unwanted
from notifier.models import Article, DigestLeftover, DigestSchedule
from notifier.sql import among, insert_ignoring_conflicts

STALE = "stale"  # the skip reason, as recorded, shown on /ops/ and counted in /metrics


def is_stale(notice: object, now: datetime, max_age: timedelta) -> bool:
    """An article older than `max_age` at `now`; never an alert or a digest."""
    if not isinstance(notice, Article):
        return False
    born = notice.published_at or notice.first_seen_at
    return now - born > max_age


def hold_back_stale(
    session: Session,
    channel: str,
    entries: Sequence[Addressee | Unwanted],
    stale_news_hours: int,
    now: datetime,
) -> list[Addressee | Unwanted]:
    """`entries` with each stale article turned into a "stale" skip; for email, the readers
    among them who take a digest get the article left for it (the caller records the skips
    and commits both together)."""
    max_age = timedelta(hours=stale_news_hours)
    result: list[Addressee | Unwanted] = []
    stale: list[Addressee] = []
    for entry in entries:
        if isinstance(entry, Addressee) and is_stale(entry.notice, now, max_age):
            stale.append(entry)
            result.append(Unwanted(entry.delivery_id, STALE))
        else:
            result.append(entry)
    if stale and channel == "email":
        leave_for_digest(session, [(e.recipient.id, e.notice.id) for e in stale], now)
    return result


def leave_for_digest(session: Session, pairs: Sequence[tuple[int, int]], now: datetime) -> None:
    """(subscriber id, article id) pairs: kept for the readers who have a digest schedule."""
    readers = {subscriber_id for subscriber_id, _ in pairs}
    with_digest = set(session.scalars(
        select(DigestSchedule.subscriber_id).where(
            among(session, DigestSchedule.subscriber_id, sorted(readers)))
    ))  # fmt: skip
    rows = [
        {"subscriber_id": subscriber_id, "article_id": article_id, "left_at": now}
        for subscriber_id, article_id in pairs
        if subscriber_id in with_digest
    ]
    if rows:
        session.execute(insert_ignoring_conflicts(session, DigestLeftover.__table__), rows)


def take_leftovers(
    session: Session, subscriber_ids: Sequence[int], now: datetime
) -> dict[int, list[int]]:
    """Per reader, the articles left for their next digest, taken away (the caller plans the
    digests that carry them in the same transaction). One statement for a planner's batch."""
    taken: dict[int, list[int]] = {}
    for subscriber_id, article_id in session.execute(
        delete(DigestLeftover)
        .where(among(session, DigestLeftover.subscriber_id, subscriber_ids),
               DigestLeftover.left_at <= now)
        .returning(DigestLeftover.subscriber_id, DigestLeftover.article_id)
    ):  # fmt: skip
        taken.setdefault(subscriber_id, []).append(article_id)
    return {subscriber_id: sorted(ids) for subscriber_id, ids in taken.items()}
