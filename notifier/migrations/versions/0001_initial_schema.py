"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-25 13:59:39.104348
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import notifier.timeutil
from notifier.timeutil import utcnow

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# The news site's categories as it names them (frozen here: later ones arrive from the feed).
SITE_CATEGORIES = [
    ("news", "News"),
    ("economy", "Economy"),
    ("energy", "Energy"),
    ("ecology", "Ecology"),
    ("opinion", "Opinion"),
    ("culture", "Culture"),
    ("gender", "Gender"),
    ("interview", "Interview"),
    ("science", "Science"),
    ("logistics-transport", "Logistics-Transport"),
    ("history", "History"),
    ("defense", "Defense"),
    ("karabakh", "Karabakh"),
    ("diaspora", "Diaspora"),
    ("covid-19", "Covid-19"),
]


def _seed_site_categories() -> None:
    table = sa.table(
        "categories",
        sa.column("slug", sa.String),
        sa.column("name", sa.String),
        sa.column("created_at", notifier.timeutil.UTCDateTime()),
    )
    now = utcnow()
    op.bulk_insert(table, [{"slug": s, "name": n, "created_at": now} for s, n in SITE_CATEGORIES])


def upgrade() -> None:
    op.create_table(
        "categories",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", notifier.timeutil.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_categories")),
        sa.UniqueConstraint("slug", name=op.f("uq_categories_slug")),
    )
    op.create_table(
        "feeds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("added_at", notifier.timeutil.UTCDateTime(), nullable=False),
        sa.Column("etag", sa.String(length=500), nullable=True),
        sa.Column("last_modified", sa.String(length=100), nullable=True),
        sa.Column("last_polled_at", notifier.timeutil.UTCDateTime(), nullable=True),
        sa.Column("last_success_at", notifier.timeutil.UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feeds")),
        sa.UniqueConstraint("url", name=op.f("uq_feeds_url")),
    )
    op.create_table(
        "subscribers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "active",
                "unsubscribed",
                "bounced",
                name="subscriberstatus",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("created_at", notifier.timeutil.UTCDateTime(), nullable=False),
        sa.Column("confirmed_at", notifier.timeutil.UTCDateTime(), nullable=True),
        sa.Column("status_changed_at", notifier.timeutil.UTCDateTime(), nullable=True),
        sa.Column("confirmation_sent_at", notifier.timeutil.UTCDateTime(), nullable=True),
        sa.Column("manage_link_sent_at", notifier.timeutil.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscribers")),
        sa.UniqueConstraint("email", name=op.f("uq_subscribers_email")),
    )
    op.create_table(
        "articles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("feed_id", sa.Integer(), nullable=False),
        sa.Column("guid", sa.String(length=2000), nullable=False),
        sa.Column("link", sa.String(length=2000), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("image_url", sa.String(length=2000), nullable=True),
        sa.Column("published_at", notifier.timeutil.UTCDateTime(), nullable=True),
        sa.Column("first_seen_at", notifier.timeutil.UTCDateTime(), nullable=False),
        sa.Column("updated_at", notifier.timeutil.UTCDateTime(), nullable=True),
        sa.Column("announce", sa.Boolean(), nullable=False),
        sa.Column("fanned_out_at", notifier.timeutil.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["feed_id"], ["feeds.id"], name=op.f("fk_articles_feed_id_feeds"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_articles")),
        sa.UniqueConstraint("guid", name=op.f("uq_articles_guid")),
    )
    op.create_table(
        "subscriber_categories",
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("category_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["category_id"],
            ["categories.id"],
            name=op.f("fk_subscriber_categories_category_id_categories"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_subscriber_categories_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "subscriber_id", "category_id", name=op.f("pk_subscriber_categories")
        ),
    )
    with op.batch_alter_table("subscriber_categories", schema=None) as batch_op:
        batch_op.create_index(
            "ix_subscriber_categories_category", ["category_id", "subscriber_id"], unique=False
        )

    op.create_table(
        "article_categories",
        sa.Column("article_id", sa.Integer(), nullable=False),
        sa.Column("category_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["article_id"],
            ["articles.id"],
            name=op.f("fk_article_categories_article_id_articles"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["category_id"],
            ["categories.id"],
            name=op.f("fk_article_categories_category_id_categories"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("article_id", "category_id", name=op.f("pk_article_categories")),
    )
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("article_id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "sending",
                "sent",
                "failed",
                "skipped",
                name="deliverystatus",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", notifier.timeutil.UTCDateTime(), nullable=False),
        sa.Column("next_attempt_at", notifier.timeutil.UTCDateTime(), nullable=False),
        sa.Column("lease_until", notifier.timeutil.UTCDateTime(), nullable=True),
        sa.Column("sent_at", notifier.timeutil.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["article_id"],
            ["articles.id"],
            name=op.f("fk_deliveries_article_id_articles"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_deliveries_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
        sa.UniqueConstraint(
            "article_id", "subscriber_id", "channel", name="uq_deliveries_recipient"
        ),
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index("ix_deliveries_due", ["status", "next_attempt_at"], unique=False)

    _seed_site_categories()


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_due")

    op.drop_table("deliveries")
    op.drop_table("article_categories")
    with op.batch_alter_table("subscriber_categories", schema=None) as batch_op:
        batch_op.drop_index("ix_subscriber_categories_category")

    op.drop_table("subscriber_categories")
    op.drop_table("articles")
    op.drop_table("subscribers")
    op.drop_table("feeds")
    op.drop_table("categories")
