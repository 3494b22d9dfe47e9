"""What a planned digest says: its articles grouped by category, newest first, read back
from the ids fixed when it was planned (so a retry or a takeover sends the same digest)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from notifier.config import Settings
from notifier.models import Article, Cadence, Category, Digest


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

    @property
    def categories(self) -> tuple[Category, ...]:
        return tuple(group.category for group in self.groups)

    @property
    def content_key(self) -> tuple:
        """Readers whose digests hold the same articles in the same groups share a rendering."""
        return (self.cadence, tuple((g.category.id, tuple(a.id for a in g.articles))
                                    for g in self.groups))  # fmt: skip


def load_digests(session: Session, digest_ids: Iterable[int]) -> dict[int, DigestNotice]:
    """digest id -> its notice; a digest whose articles were all deleted has no groups."""
    digests = list(session.scalars(select(Digest).where(Digest.id.in_(set(digest_ids)))))
    wanted = {i for d in digests for i in json.loads(d.article_ids)}
    articles = {
        a.id: a
        for a in session.scalars(
            select(Article).where(Article.id.in_(wanted)).options(selectinload(Article.categories))
        )
    }
    category_ids = {i for d in digests for i in json.loads(d.category_ids)}
    categories = {c.id: c for c in session.scalars(select(Category).where(
        Category.id.in_(category_ids)))}  # fmt: skip
    return {d.id: _notice(d, articles, categories) for d in digests}


def _notice(digest: Digest, articles: dict, categories: dict) -> DigestNotice:
    """Each article once, under the first of its categories (by name) the digest carries."""
    carried = sorted((categories[i] for i in json.loads(digest.category_ids) if i in categories),
                     key=lambda c: c.name)  # fmt: skip
    grouped: dict[int, list[Article]] = {c.id: [] for c in carried}
    for article_id in json.loads(digest.article_ids):  # newest first, as planned
        article = articles.get(article_id)
        if article is None:
            continue
        home = next((c for c in carried if c in article.categories), None)
        if home is not None:
            grouped[home.id].append(article)
    groups = tuple(DigestGroup(c, tuple(grouped[c.id])) for c in carried if grouped[c.id])
    return DigestNotice(digest.id, digest.cadence, digest.due_at,
                        tuple(json.loads(digest.article_ids)), groups)  # fmt: skip


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
