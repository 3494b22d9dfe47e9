"""Categories readers choose from; new ones arrive with the feed and the CMS webhook.

A category is matched the way WordPress identifies it: by its term id, then its slug, then
its name with HTML entities decoded. The feed only knows names ("Oil & Gas"), the webhook
knows all three; both must land on the same row, or the readers of one never get what the
other announces.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote

from sqlalchemy import select
from sqlalchemy.orm import Session

from notifier.models import Category
from notifier.sql import insert_ignoring_conflicts

MAX_LENGTH = 200


class UnknownCategory(ValueError):
    """A reader asked for a category the site does not have."""


@dataclass(frozen=True)
class CategoryRef:
    """A category as the site names it: only the name from a feed; the webhook adds
    WordPress's term id and slug, which never change when an editor renames it."""

    name: str
    slug: str | None = None
    term_id: int | None = None


def slugify(name: str) -> str:
    """WordPress-like slug: 'Logistics-Transport' -> 'logistics-transport'."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    if not slug:  # a name with no Latin letters at all: keep its own letters
        slug = re.sub(r"[\W_]+", "-", name.lower(), flags=re.UNICODE).strip("-")
    return slug[:MAX_LENGTH]


def clean_name(name: str) -> str:
    """WordPress keeps names HTML-escaped ('Oil &amp; Gas'); feeds print them decoded."""
    return " ".join(html.unescape(name or "").split())[:MAX_LENGTH]


def clean_slug(slug: str | None) -> str | None:
    """WordPress stores non-ASCII slugs percent-encoded ('%d0%bd%d0%b0...'); we keep letters."""
    if not slug:
        return None
    return unquote(slug).strip().lower()[:MAX_LENGTH] or None


def list_categories(session: Session) -> list[Category]:
    return list(session.scalars(select(Category).order_by(Category.name)))


def categories_for_slugs(session: Session, slugs: Iterable[str]) -> list[Category]:
    """Resolve every slug or raise UnknownCategory naming the ones that do not exist."""
    wanted = {s.strip().lower() for s in slugs}
    found = list(session.scalars(select(Category).where(Category.slug.in_(wanted))))
    missing = wanted - {c.slug for c in found}
    if missing:
        raise UnknownCategory(f"Unknown category: {', '.join(sorted(missing))}.")
    return sorted(found, key=lambda c: c.name)


class CategoryIndex:
    """Every category, loaded once, looked up by term id, slug and name; creates the ones the
    site added since. One query per feed poll, however many items and categories it has."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._rows: list[Category] = []
        for category in session.scalars(select(Category).order_by(Category.id)):
            self._add(category)

    def _add(self, category: Category) -> None:
        self._rows.append(category)

    def _find(self, **wanted) -> Category | None:
        return next(
            (c for c in self._rows if all(getattr(c, k) == v for k, v in wanted.items())), None
        )

    def resolve(self, refs: Iterable[CategoryRef]) -> list[Category]:
        found = {c.id: c for ref in refs if (c := self.resolve_one(ref)) is not None}
        return sorted(found.values(), key=lambda c: (c.name, c.id))

    def resolve_one(self, ref: CategoryRef) -> Category | None:
        name, slug = clean_name(ref.name), clean_slug(ref.slug)
        label = name or slug  # a category without a name is called by its slug
        if not label:
            return None
        category = self._match(ref.term_id, slug, name)
        if category is None:
            return self._create(label, slug, ref.term_id)
        if ref.term_id is not None:
            self._learn(category, ref.term_id, slug, name)
        return category

    def count_new(self, refs: Iterable[CategoryRef]) -> int:
        """How many categories resolving these refs would create (nothing is written)."""
        new = set()
        for ref in refs:
            name, slug = clean_name(ref.name), clean_slug(ref.slug)
            base = slug or slugify(name)
            if base and self._match(ref.term_id, slug, name) is None:
                new.add((ref.term_id, base, name))
        return len(new)

    def _match(self, term_id: int | None, slug: str | None, name: str) -> Category | None:
        if term_id is not None and (found := self._find(wp_term_id=term_id)):
            return found
        # A row that already belongs to another WordPress term is never taken over.
        free = {} if term_id is None else {"wp_term_id": None}
        if slug and (found := self._find(slug=slug)) and (not free or found.wp_term_id is None):
            return found
        if name and (found := self._find(name=name, **free)):
            return found
        if name:
            # Case differs from a category WordPress never confirmed (seeded or from an old
            # feed): the same category. Two WordPress terms differing in case stay two.
            key = name.casefold()
            folded = [c for c in self._rows if c.wp_term_id is None and c.name.casefold() == key]
            if len(folded) == 1:
                return folded[0]
        return None

    def _learn(self, category: Category, term_id: int, slug: str | None, name: str) -> None:
        """WordPress told us who this is: remember its term id, follow renames."""
        category.wp_term_id = term_id
        if name and category.name != name:
            category.name = name
        if slug and category.slug != slug and self._find(slug=slug) is None:
            category.slug = slug

    def _create(self, name: str, slug: str | None, term_id: int | None) -> Category | None:
        base = slug or slugify(name)
        if not base:
            return None
        for candidate in _slug_candidates(base):
            existing = self._find(slug=candidate)
            if existing is not None:
                if existing.name == name and existing.wp_term_id in (None, term_id):
                    return existing
                continue
            values = {"slug": candidate, "name": name, "wp_term_id": term_id}
            self.session.execute(
                insert_ignoring_conflicts(self.session, Category.__table__), [values]
            )
            row = self.session.scalars(
                select(Category).where(
                    Category.wp_term_id == term_id if term_id else Category.slug == candidate
                )
            ).first()
            if row is not None and (term_id or row.name == name):
                self._add(row)  # ours, or a concurrent poll's insert of the same category
                return row
        return None


def _slug_candidates(base: str) -> Iterable[str]:
    """'energy', 'energy-2', 'energy-3', ... as WordPress numbers a taken slug."""
    yield base
    for number in range(2, 50):
        yield f"{base[: MAX_LENGTH - 4]}-{number}"
