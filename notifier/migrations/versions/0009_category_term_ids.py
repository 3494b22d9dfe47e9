"""categories: WordPress term ids, and categories split by HTML entities merged

The webhook used to send WordPress's stored names ('Oil &amp; Gas') while the feed printed
them decoded ('Oil & Gas'), so one WordPress category became two here ('oil-amp-gas' and
'oil-gas') and each had only some of the readers. Each entity-escaped category is folded into
its decoded twin with every reader, browser, article and alert it had; one without a twin is
renamed in place.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 20:45:00
"""

from __future__ import annotations

import html

import sqlalchemy as sa
from alembic import op

from notifier.domain.categories import clean_name, slugify

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# Tables that point at a category, with the column naming the other side of each link.
LINKS = {
    "subscriber_categories": "subscriber_id",
    "push_subscription_categories": "push_subscription_id",
    "article_categories": "article_id",
    "alert_categories": "alert_id",
}


def upgrade() -> None:
    with op.batch_alter_table("categories") as batch:
        batch.add_column(sa.Column("wp_term_id", sa.Integer(), nullable=True))
        batch.create_unique_constraint("uq_categories_wp_term_id", ["wp_term_id"])
    _merge_entity_split_categories(op.get_bind())


def _merge_entity_split_categories(conn) -> None:
    rows = conn.execute(sa.text("SELECT id, slug, name FROM categories ORDER BY id")).all()
    by_name = {name: id_ for id_, _, name in rows}
    slugs = {slug: id_ for id_, slug, _ in rows}
    for id_, slug, name in rows:
        if html.unescape(name) == name:
            continue
        decoded = clean_name(name)
        twin = by_name.get(decoded) or slugs.get(slugify(decoded))
        if twin is not None and twin != id_:
            _move_links(conn, id_, twin)
            conn.execute(sa.text("DELETE FROM categories WHERE id = :id"), {"id": id_})
            continue
        new_slug = slugify(decoded)
        if slugs.get(new_slug, id_) != id_:
            new_slug = slug
        conn.execute(
            sa.text("UPDATE categories SET name = :name, slug = :slug WHERE id = :id"),
            {"name": decoded, "slug": new_slug, "id": id_},
        )
        by_name[decoded], slugs[new_slug] = id_, id_


def _move_links(conn, old: int, new: int) -> None:
    for table, other in LINKS.items():
        conn.execute(
            sa.text(
                f"INSERT INTO {table} ({other}, category_id) SELECT {other}, :new FROM {table} "
                f"WHERE category_id = :old AND {other} NOT IN "
                f"(SELECT {other} FROM {table} WHERE category_id = :new)"
            ),
            {"old": old, "new": new},
        )
        conn.execute(sa.text(f"DELETE FROM {table} WHERE category_id = :old"), {"old": old})


def downgrade() -> None:
    with op.batch_alter_table("categories") as batch:
        batch.drop_constraint("uq_categories_wp_term_id", type_="unique")
        batch.drop_column("wp_term_id")
