"""What a planned digest says: its articles grouped by category, newest first, read back
from the ids fixed when it was planned (so a retry or a takeover sends the same digest)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from notifier.config import Settings
from notifier.models import Article, Cadence, Category, Digest
from notifier.sql import among


@dataclass(frozen=True)
class DigestGroup:
    """One category's articles in a digest, newest first (all of them: the composer caps)."""

    category: Category
    articles: tuple[Article, ...]


@dataclass(frozen=True)
class DigestNotice:
    """A digest as the delivery path sees it: a notice like an article or an alert."""

    id: int
    cadence: str
    due_at: datetime
    article_ids: tuple[int, ...]
    groups: tuple[DigestGroup, ...]

    # Computed once: the send path asks each reader's digest for both.
    @cached_property
    def categories(self) -> tuple[Category, ...]:
        return tuple(group.category for group in self.groups)

    @cached_property
    def content_key(self) -> tuple:
        """Readers whose digests hold the same articles in the same groups share a rendering."""
        return (self.cadence, tuple((g.category.id, tuple(a.id for a in g.articles))
                                    for g in self.groups))  # fmt: skip


def load_digests(session: Session, digest_ids: Iterable[int]) -> dict[int, DigestNotice]:
    """digest id -> its notice; a digest whose articles were all deleted has no groups.
    Plain rows, not ORM objects: a chunk is hundreds of digests, most of them holding the
    same few sets of articles, each grouped once."""
    table = Digest.__table__.c
    digests = session.execute(
        select(table.id, table.cadence, table.due_at, table.article_ids, table.category_ids)
        .where(among(session, table.id, sorted(set(digest_ids))))
    ).all()  # fmt: skip
    contents = {(d.article_ids, d.category_ids) for d in digests}
    parsed = {key: (json.loads(key[0]), json.loads(key[1])) for key in contents}
    wanted = {i for article_ids, _ in parsed.values() for i in article_ids}
    articles = {
        a.id: a
        for a in session.scalars(
            select(Article).where(Article.id.in_(wanted)).options(selectinload(Article.categories))
        )
    }
    category_ids = {i for _, ids in parsed.values() for i in ids}
    categories = {c.id: c for c in session.scalars(select(Category).where(
        Category.id.in_(category_ids)))}  # fmt: skip
    # Plain sets, not the ORM collection, for the one question asked per article and group.
    homes = {a.id: {c.id for c in a.categories} for a in articles.values()}
    grouped = {key: _groups(*parsed[key], articles, homes, categories) for key in contents}
    return {
        d.id: DigestNotice(d.id, d.cadence, d.due_at,
                           tuple(parsed[(d.article_ids, d.category_ids)][0]),
                           grouped[(d.article_ids, d.category_ids)])
        for d in digests
    }  # fmt: skip


def _groups(article_ids: list[int], category_ids: list[int], articles: dict,
            homes: dict[int, set[int]], categories: dict) -> tuple[DigestGroup, ...]:  # fmt: skip
    """Each article once, under the first of its categories (by name) the digest carries."""
    carried = sorted((categories[i] for i in category_ids if i in categories),
                     key=lambda c: c.name)  # fmt: skip
    grouped: dict[int, list[Article]] = {c.id: [] for c in carried}
    for article_id in article_ids:  # newest first, as planned
        article = articles.get(article_id)
        if article is None:
            continue
        home = next((c for c in carried if c.id in homes[article_id]), None)
        if home is not None:
            grouped[home.id].append(article)
    return tuple(DigestGroup(c, tuple(grouped[c.id])) for c in carried if grouped[c.id])


def digest_context(notice: DigestNotice, settings: Settings) -> dict:
    """What the digest templates read: per category at most DIGEST_CATEGORY_CAP articles,
    and how many more there are behind the category's link on the site. The links to
    switch cadence lead to the reader's preferences grid (the manage link's #cadence)."""
    cap, site = settings.digest_category_cap, settings.site_url.rstrip("/")
    groups = [
        {
            "name": group.category.name,
            "articles": group.articles[:cap],
            "more": max(0, len(group.articles) - cap),
            "more_url": f"{site}/category/{group.category.slug}/",  # WordPress's archive
        }
        for group in notice.groups
    ]
    other = "weekly" if notice.cadence == Cadence.DAILY else "daily"
    return {"groups": groups, "cadence": notice.cadence, "other_cadence": other,
            "article_count": sum(len(g.articles) for g in notice.groups)}  # fmt: skip
