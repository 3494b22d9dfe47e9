"""Digest leftovers: articles whose instant email came too late (stale) for a reader who also
takes a digest; the next digest of that reader carries them and takes the row away.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06 23:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from notifier.timeutil import UTCDateTime

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "digest_leftovers",
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("article_id", sa.Integer(), nullable=False),
        sa.Column("left_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            ondelete="CASCADE",
            name=op.f("fk_digest_leftovers_subscriber_id_subscribers"),
        ),
        sa.ForeignKeyConstraint(
            ["article_id"],
            ["articles.id"],
            ondelete="CASCADE",
            name=op.f("fk_digest_leftovers_article_id_articles"),
        ),
        sa.PrimaryKeyConstraint("subscriber_id", "article_id", name=op.f("pk_digest_leftovers")),
    )


def downgrade() -> None:
    op.drop_table("digest_leftovers")
