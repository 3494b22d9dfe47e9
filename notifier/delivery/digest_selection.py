"""What the digest planner reads for a batch of due schedules, a few statements per batch:
the readers (status, zone, digest time) with their digest categories, and the articles of
the period with what each reader was already emailed instantly.

A digest holds the announced articles of the reader's digest categories first seen in
(since, until], newest first, without those emailed (or being emailed) to the reader at once.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from notifier.models import (
    Article,
    Cadence,
    Delivery,
    DeliveryStatus,
    Digest,
    Subscriber,
    SubscriberStatus,
    article_categories,
    subscriber_categories,
)
from notifier.sql import among

# An instant email in one of these states went, or is still going, to the reader.
EMAILED_OR_GOING = (DeliveryStatus.SENT, DeliveryStatus.SENDING, DeliveryStatus.PENDING)
DIGEST_CADENCE_VALUES = (Cadence.DAILY.value, Cadence.WEEKLY.value)


@dataclass
class DigestReader:
    """A reader as the planner needs them: plain values, read for a whole batch at once."""

    id: int
    status: SubscriberStatus
    timezone: str
    digest_hour: int
    digest_weekday: int
    categories: dict[Cadence, list[int]] = field(default_factory=dict)  # sorted ids
    followed: set[int] = field(default_factory=set)  # every category, whatever the cadence


def digest_readers(session: Session, subscriber_ids: Sequence[int]) -> dict[int, DigestReader]:
    """id -> reader with their categories, per digest cadence and all (two statements)."""
    table = Subscriber.__table__.c
    readers = {
        row.id: DigestReader(row.id, SubscriberStatus(row.status), row.timezone,
                             row.digest_hour, row.digest_weekday)
        for row in session.execute(
            select(table.id, table.status, table.timezone, table.digest_hour,
                   table.digest_weekday).where(among(session, table.id, subscriber_ids))
        )
    }  # fmt: skip
    follows = subscriber_categories.c
    for subscriber_id, category_id, cadence in session.execute(
        select(follows.subscriber_id, follows.category_id, follows.cadence)
        .where(among(session, follows.subscriber_id, subscriber_ids))
    ):  # fmt: skip
        reader = readers.get(subscriber_id)
        if reader is None:
            continue
        reader.followed.add(category_id)
        if cadence in DIGEST_CADENCE_VALUES:
            reader.categories.setdefault(Cadence(cadence), []).append(category_id)
    for reader in readers.values():
        for ids in reader.categories.values():
            ids.sort()
    return readers


class DueSchedule(Protocol):
    """A locked schedule: whose, and since when its period runs."""

    @property
    def subscriber_id(self) -> int: ...

    @property
    def since(self) -> datetime: ...


@dataclass(frozen=True)
class _Article:
    id: int
    first_seen_at: datetime
    newest: datetime  # published, else first seen: digests list newest first
    categories: frozenset[int]


@dataclass
class PeriodArticles:
    """The announced articles first seen in the batch's widest period (newest first), per
    reader the ones among them emailed instantly, and the leftovers readers are owed."""

    candidates: list[_Article]
    emailed: dict[int, set[int]]
    leftovers: dict[int, list[_Article]] = field(default_factory=dict)

    @classmethod
    def load(
        cls, session: Session, due: Sequence[DueSchedule], readers: dict[int, DigestReader],
        until: datetime,
    ) -> PeriodArticles:  # fmt: skip
        wanted = {c for s in due for ids in readers[s.subscriber_id].categories.values()
                  for c in ids}  # fmt: skip
        if not due or not wanted:
            return cls([], {})
        since = min(s.since for s in due)
        candidates = _articles(
            session,
            article_categories.c.category_id.in_(wanted),
            Article.announce.is_(True),
            Article.first_seen_at > since,
            Article.first_seen_at <= until,
        )
        ids = [c.id for c in candidates]
        readers_due = [s.subscriber_id for s in due]
        emailed = _emailed(session, readers_due, ids)
        for reader_id, digested in _digested(session, readers_due, set(ids), since).items():
            emailed[reader_id] |= digested
        return cls(candidates, emailed)

    def take_leftovers(self, leftovers: dict[int, list[int]], session: Session) -> None:
        """Articles whose instant email came too late, taken for these readers' digests."""
        wanted = sorted({a for ids in leftovers.values() for a in ids})
        if not wanted:
            return
        found = {a.id: a for a in _articles(session, among(session, Article.id, wanted))}
        self.leftovers = {reader_id: [found[a] for a in ids if a in found]
                          for reader_id, ids in leftovers.items()}  # fmt: skip

    def for_reader(
        self, reader: DigestReader, category_ids: list[int], since: datetime
    ) -> tuple[list[int], list[int]]:
        """The reader's digest: (article ids newest first, category ids). A leftover goes
        under the categories of it the reader still follows (one they no longer follow is
        dropped); the first digest planned for the reader takes them all."""
        followed, emailed = set(category_ids), self.emailed.get(reader.id, ())
        articles = [
            c for c in self.candidates
            if c.first_seen_at > since and c.categories & followed and c.id not in emailed
        ]  # fmt: skip
        leftovers = [a for a in self.leftovers.pop(reader.id, []) if a.categories & reader.followed]
        if leftovers:
            category_ids = sorted(followed.union(*(a.categories & reader.followed
                                                   for a in leftovers)))  # fmt: skip
            chosen = {a.id: a for a in articles + leftovers}
            articles = sorted(chosen.values(), key=lambda a: (a.newest, a.id), reverse=True)
        return [a.id for a in articles], category_ids


def _articles(session: Session, *where) -> list[_Article]:
    """Articles with their categories (those matching `where`), newest first."""
    newest = func.coalesce(Article.published_at, Article.first_seen_at)
    found: dict[int, tuple[datetime, datetime, set[int]]] = {}
    for article_id, first_seen_at, newest_at, category_id in session.execute(
        select(Article.id, Article.first_seen_at, newest, article_categories.c.category_id)
        .join(article_categories, article_categories.c.article_id == Article.id)
        .where(*where)
        .order_by(newest.desc(), Article.id.desc())
    ):  # fmt: skip
        found.setdefault(article_id, (first_seen_at, newest_at, set()))[2].add(category_id)
    return [_Article(i, seen, newest_at, frozenset(categories))
            for i, (seen, newest_at, categories) in found.items()]  # fmt: skip


def _digested(
    session: Session, subscriber_ids: list[int], article_ids: set[int], since: datetime
) -> dict[int, set[int]]:
    """subscriber id -> the articles among `article_ids` already in another digest of theirs
    reaching past `since`: a category moved from the daily to the weekly digest (the grid, or
    the digest's own switch link) must not bring back what the daily digest carried. A
    reader's previous digest of the same cadence ends where this period starts: not read."""
    digested: dict[int, set[int]] = defaultdict(set)
    if not article_ids:
        return digested
    for subscriber_id, listed in session.execute(
        select(Digest.subscriber_id, Digest.article_ids)
        .where(among(session, Digest.subscriber_id, subscriber_ids))
        .where(Digest.until > since)
    ):  # fmt: skip
        digested[subscriber_id] |= article_ids.intersection(json.loads(listed))
    return digested


def _emailed(session: Session, subscriber_ids: list[int], article_ids: list[int]):
    """subscriber id -> the articles among `article_ids` emailed (or going) to them."""
    emailed: dict[int, set[int]] = defaultdict(set)
    if not article_ids:
        return emailed
    deliveries = Delivery.__table__.c
    for subscriber_id, article_id in session.execute(
        select(deliveries.subscriber_id, deliveries.article_id)
        .where(among(session, deliveries.article_id, article_ids))
        .where(among(session, deliveries.subscriber_id, subscriber_ids))
        .where(deliveries.channel == "email", deliveries.status.in_(EMAILED_OR_GOING))
    ):  # fmt: skip
        emailed[subscriber_id].add(article_id)
    return emailed
