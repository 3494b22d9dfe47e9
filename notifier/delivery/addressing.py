"""Who a chunk of deliveries goes to, checked at send time: for a chunk of an article, four
statements (the delivery rows themselves come with the claim:
notifier.delivery.claims.claim_rows).

A reader may have left, paused their email, changed categories or been suppressed since
planning, and an editor may have stopped an alert: each delivery either gets its recipient,
notice and the notice's categories the recipient still follows, or the reason it must not go
out any more.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Row, String, literal, select, type_coerce
from sqlalchemy.orm import Session, joinedload

from notifier.delivery.claims import DELIVERIES, SENT_DELIVERY_COLUMNS
from notifier.delivery.digest_content import DigestNotice, load_digests
from notifier.domain.audiences import Audience
from notifier.models import Alert, AlertStatus, Article, Cadence, Category
from notifier.sql import among
from notifier.timeutil import utcnow


@dataclass(frozen=True)
class Addressee:
    delivery_id: int
    notice: Article | Alert | DigestNotice
    recipient: Row  # its Audience.sent_columns of subscribers or push_subscriptions: not ORM
    matched: tuple[Category, ...]  # the notice's categories the recipient follows, by name
    delivery: Row  # its SENT_DELIVERY_COLUMNS as read at send time (by the claim)

    @property
    def kind(self) -> str:
        if isinstance(self.notice, DigestNotice):
            return "digest"
        return "alert" if isinstance(self.notice, Alert) else "article"


@dataclass(frozen=True)
class Unwanted:
    delivery_id: int
    reason: str


def address_chunk(
    session: Session,
    channel: str,
    audience: Audience,
    delivery_ids: Sequence[int],
    now: datetime | None = None,
    claimed: Mapping[int, Row] | None = None,
) -> list[Addressee | Unwanted]:
    """One entry per delivery id, in the order given; `audience`: who `channel` reaches;
    `now` (default: the clock) decides whether a reader's pause still runs. `claimed`: the
    rows as the claim returned them (SENT_DELIVERY_COLUMNS), so they are not read again."""
    now = now or utcnow()
    if claimed is None:
        claimed = {row.id: row for row in session.execute(
            select(*SENT_DELIVERY_COLUMNS).where(among(session, DELIVERIES.c.id, delivery_ids))
        ).all()}  # fmt: skip
    recipient_key = audience.recipient_column
    rows = [
        (d.id, d.article_id, d.alert_id, getattr(d, recipient_key), d.digest_id, d)
        for d in (claimed.get(i) for i in delivery_ids)
        if d is not None
    ]
    recipient_ids = {row[3] for row in rows if row[3] is not None}
    # Plain rows, not ORM objects: a chunk is hundreds of recipients, read once, never changed.
    table = audience.recipient.__table__
    columns = [table.c[name] for name in audience.sent_columns]
    recipients = {
        row.id: row
        for row in session.execute(
            select(*columns).where(among(session, table.c.id, recipient_ids))
        ).all()  # one fetch: iterating a result fetches a row at a time
    }
    follows: dict[int, set[int]] = defaultdict(set)
    membership = audience.membership
    member = membership.c[audience.recipient_column]
    instantly: dict[int, set[int]] = defaultdict(set)
    instant = Cadence.INSTANT.value  # read once: an enum's value is a descriptor call
    # The stored string, not a Cadence: converting each row's value to the enum member was a
    # Python call per row, two rows per reader.
    cadence = (type_coerce(membership.c[audience.cadence], String) if audience.cadence
               else literal(instant))  # fmt: skip
    for recipient_id, category_id, how in session.execute(
        select(member, membership.c.category_id, cadence)
        .where(among(session, member, recipient_ids))
    ).all():  # fmt: skip
        follows[recipient_id].add(category_id)
        if how == instant:
            instantly[recipient_id].add(category_id)
    notices = _notices(session, rows)
    categories = _categories(session, follows, notices)

    by_id = {row[0]: row for row in rows}
    matches = _Matches(categories)
    entries: list[Addressee | Unwanted] = []
    for delivery_id in delivery_ids:
        row = by_id.get(delivery_id)
        if row is None:
            continue  # deleted with its notice or recipient: nothing to send, nothing to record
        _, article_id, alert_id, recipient_id, digest_id, delivery = row
        notice = notices.get(_notice_key(article_id, alert_id, digest_id))
        recipient = recipients.get(recipient_id)
        # An article goes at once only for categories the reader takes instantly.
        followed = instantly if isinstance(notice, Article) else follows
        entries.append(
            _addressee(
                delivery_id, channel, notice, recipient, followed[recipient_id], matches,
                audience, now, delivery,
            )
        )  # fmt: skip
    return entries


def _addressee(delivery_id, channel, notice, recipient, followed, matches, audience, now,
               delivery):  # fmt: skip
    if isinstance(notice, Alert) and notice.status != AlertStatus.SENDING:
        return Unwanted(delivery_id, f"alert is {notice.status.value}")
    if recipient is None or notice is None:
        return Unwanted(delivery_id, "recipient or article deleted")
    if recipient.status != audience.active:
        return Unwanted(delivery_id, f"{channel} recipient is {recipient.status.value}")
    if (until := audience.paused(recipient, now)) is not None:
        return Unwanted(delivery_id, f"the reader paused email until {until.isoformat()}")
    if isinstance(notice, DigestNotice) and not notice.groups:
        return Unwanted(delivery_id, "every article of the digest was deleted")
    matched = matches.of(notice, followed)
    if not matched:
        return Unwanted(delivery_id, "recipient no longer follows any of the article's categories")
    return Addressee(delivery_id, notice, recipient, matched, delivery)


class _Matches:
    """The notice's categories a reader follows, by name, worked out once per notice and
    set of followed categories in a chunk: its readers follow a few combinations, and
    reading the notice's categories and sorting per reader was a tenth of addressing."""

    def __init__(self, categories: Mapping[int, Category]) -> None:
        self.categories = categories
        self.own: dict[int, frozenset[int] | None] = {}  # id(notice) -> its category ids
        self.found: dict[tuple[int, frozenset[int]], tuple[Category, ...]] = {}

    def of(self, notice, followed: set[int]) -> tuple[Category, ...]:
        if id(notice) not in self.own:  # None: an alert to every category
            self.own[id(notice)] = (
                None if getattr(notice, "target_all", False)
                else frozenset(c.id for c in notice.categories)
            )  # fmt: skip
        own = self.own[id(notice)]
        targeted = frozenset(followed) if own is None else own & followed
        key = (id(notice), targeted)
        matched = self.found.get(key)
        if matched is None:
            categories = self.categories
            matched = self.found[key] = tuple(
                sorted((categories[i] for i in targeted if i in categories), key=lambda c: c.name)
            )
        return matched


def _notice_key(article_id, alert_id, digest_id) -> tuple[str, int]:
    if digest_id is not None:
        return ("digest", digest_id)
    return ("alert", alert_id) if alert_id else ("article", article_id)


def _notices(session: Session, rows) -> dict[tuple[str, int], Article | Alert | DigestNotice]:
    article_ids = {row[1] for row in rows if row[1] is not None}
    alert_ids = {row[2] for row in rows if row[2] is not None}
    digest_ids = {row[4] for row in rows if row[4] is not None}
    found: dict[tuple[str, int], Article | Alert | DigestNotice] = {}
    if digest_ids:
        found.update({("digest", i): d for i, d in load_digests(session, digest_ids).items()})
    if article_ids:
        query = select(Article).where(Article.id.in_(article_ids))
        for article in session.scalars(query.options(joinedload(Article.categories))).unique():
            found[("article", article.id)] = article
    if alert_ids:
        alert_query = select(Alert).where(Alert.id.in_(alert_ids))
        for alert in session.scalars(alert_query.options(joinedload(Alert.categories))).unique():
            found[("alert", alert.id)] = alert
    return found


def _categories(session: Session, follows, notices) -> dict[int, Category]:
    """The categories a chunk's readers can be matched on: a notice's own (loaded with it),
    and, for an alert to every category, all that its readers follow (read here)."""
    found = {c.id: c for notice in notices.values() for c in notice.categories}
    if any(getattr(notice, "target_all", False) for notice in notices.values()):
        missing = set().union(*follows.values()) - found.keys() if follows else set()
        if missing:
            found.update((c.id, c) for c in session.scalars(
                select(Category).where(Category.id.in_(missing))))  # fmt: skip
    return found


def notice_time(notice: Article | Alert | DigestNotice) -> datetime | None:
    """When readers' wait began: the article first seen, the alert started, the digest due."""
    if isinstance(notice, DigestNotice):
        return notice.due_at
    if isinstance(notice, Alert):
        return notice.started_at or notice.created_at
    return notice.first_seen_at
