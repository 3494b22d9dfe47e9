"""Categories readers choose from; new ones arrive with the feed."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from notifier.domain.sql import insert_ignoring_conflicts
from notifier.models import Category


class UnknownCategory(ValueError):
    """A reader asked for a category the site does not have."""


def slugify(name: str) -> str:
    """WordPress-like slug: 'Logistics-Transport' -> 'logistics-transport'."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    if not slug:  # a name with no Latin letters at all: keep its own letters
        slug = re.sub(r"[\W_]+", "-", name.lower(), flags=re.UNICODE).strip("-")
    return slug[:200]


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


def ensure_categories(session: Session, names: Iterable[str]) -> list[Category]:
    """Return the categories with these names, creating the ones the site added since."""
    by_slug: dict[str, str] = {}
    for name in names:
        clean = " ".join(name.split())[:200]
        if clean and slugify(clean):
            by_slug.setdefault(slugify(clean), clean)
    if not by_slug:
        return []
    session.execute(
        insert_ignoring_conflicts(session, Category.__table__),
        [{"slug": slug, "name": name} for slug, name in by_slug.items()],
    )
    return list(session.scalars(select(Category).where(Category.slug.in_(by_slug))))
