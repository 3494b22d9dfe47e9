"""Reader cadence: instant or digest per category, a timezone and digest time per reader,
digest schedules, digests as notices of their own

subscriber_categories.cadence says how each followed category reaches the reader by email
(instant, daily, weekly; not following it is "off"); existing rows stay instant, today's
behaviour. digest_schedules holds, per reader and cadence, when the next digest is due and
since when its articles count; digests are the planned digests themselves, unique per reader
and period, and a delivery may now name a digest as its notice.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from notifier.timeutil import UTCDateTime

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

CADENCES = ("instant", "daily", "weekly")
OLD_ONE_NOTICE = "(article_id IS NULL) <> (alert_id IS NULL)"
ONE_NOTICE = (
    "(CASE WHEN article_id IS NULL THEN 0 ELSE 1 END + CASE WHEN alert_id IS NULL THEN 0 ELSE 1 END"
    " + CASE WHEN digest_id IS NULL THEN 0 ELSE 1 END) = 1"
)


def upgrade() -> None:
    with op.batch_alter_table("subscriber_categories") as batch:
        batch.add_column(
            sa.Column(
                "cadence",
                sa.Enum(*CADENCES, name="cadence", native_enum=False, length=10),
                nullable=False,
                server_default="instant",
            )
        )
    with op.batch_alter_table("subscribers") as batch:
        batch.add_column(sa.Column("timezone", sa.String(64), nullable=False, server_default="UTC"))
        batch.add_column(sa.Column("digest_hour", sa.Integer(), nullable=False, server_default="7"))
        batch.add_column(
            sa.Column("digest_weekday", sa.Integer(), nullable=False, server_default="0")
        )
    op.create_table(
        "digest_schedules",
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("cadence", sa.String(10), nullable=False),
        sa.Column("next_at", UTCDateTime(), nullable=False),
        sa.Column("since", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            ondelete="CASCADE",
            name=op.f("fk_digest_schedules_subscriber_id_subscribers"),
        ),
        sa.PrimaryKeyConstraint("subscriber_id", "cadence", name=op.f("pk_digest_schedules")),
    )
    op.create_index(op.f("ix_digest_schedules_next_at"), "digest_schedules", ["next_at"])
    op.create_table(
        "digests",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("cadence", sa.String(10), nullable=False),
        sa.Column("due_at", UTCDateTime(), nullable=False),
        sa.Column("since", UTCDateTime(), nullable=False),
        sa.Column("until", UTCDateTime(), nullable=False),
        sa.Column("article_ids", sa.Text(), nullable=False),
        sa.Column("category_ids", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            ondelete="CASCADE",
            name=op.f("fk_digests_subscriber_id_subscribers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_digests")),
        sa.UniqueConstraint("subscriber_id", "cadence", "due_at", name="uq_digests_period"),
    )
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("digest_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_deliveries_digest_id_digests"), "digests", ["digest_id"], ["id"],
            ondelete="CASCADE",
        )  # fmt: skip
        batch.drop_constraint("one_notice", type_="check")
        batch.create_check_constraint("one_notice", ONE_NOTICE)
        batch.create_index(
            "uq_deliveries_digest_recipient", ["digest_id", "subscriber_id", "channel"],
            unique=True,
            postgresql_where=sa.text("digest_id IS NOT NULL AND subscriber_id IS NOT NULL"),
            sqlite_where=sa.text("digest_id IS NOT NULL AND subscriber_id IS NOT NULL"),
        )  # fmt: skip


def downgrade() -> None:
    op.execute(sa.text("DELETE FROM deliveries WHERE digest_id IS NOT NULL"))
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_index("uq_deliveries_digest_recipient")
        batch.drop_constraint("one_notice", type_="check")
        batch.create_check_constraint("one_notice", OLD_ONE_NOTICE)
        batch.drop_constraint(op.f("fk_deliveries_digest_id_digests"), type_="foreignkey")
        batch.drop_column("digest_id")
    op.drop_table("digests")
    op.drop_index(op.f("ix_digest_schedules_next_at"), table_name="digest_schedules")
    op.drop_table("digest_schedules")
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("digest_weekday")
        batch.drop_column("digest_hour")
        batch.drop_column("timezone")
    with op.batch_alter_table("subscriber_categories") as batch:
        batch.drop_column("cadence")
