"""bounce reports and suppressions as data

Messages returned to the per-delivery bounce address (DSNs, ARF complaints, auto-replies)
are kept with what they said and the delivery they named; an address we stopped mailing
gets a suppression row with its reason, source and evidence, which ops can lift. Lifting
forgives the bounces before it (subscribers.bounces_forgiven_at). Suppressions that hard
bounces at send time made before this revision are written as rows too.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import notifier.timeutil

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

UTC = notifier.timeutil.UTCDateTime


def _enum(*values: str, name: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, length=20)


def upgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.add_column(sa.Column("bounces_forgiven_at", UTC(), nullable=True))
    op.create_table(
        "bounce_reports",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("received_at", UTC(), nullable=False),
        sa.Column("source", sa.String(40), nullable=False),
        sa.Column(
            "kind",
            _enum(
                "hard", "soft", "complaint", "delay", "auto_reply", "unrelated", name="bouncekind"
            ),
            nullable=False,
        ),
        sa.Column("delivery_id", sa.Integer(), nullable=True),
        sa.Column("subscriber_id", sa.Integer(), nullable=True),
        sa.Column("recipient", sa.String(320), nullable=True),
        sa.Column("status", sa.String(20), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("raw", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["deliveries.id"],
            ondelete="SET NULL",
            name="fk_bounce_reports_delivery_id_deliveries",
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            ondelete="SET NULL",
            name="fk_bounce_reports_subscriber_id_subscribers",
        ),
        sa.UniqueConstraint("digest", name="uq_bounce_reports_digest"),
    )
    op.create_index("ix_bounce_reports_received_at", "bounce_reports", ["received_at"])
    op.create_index("ix_bounce_reports_delivery_id", "bounce_reports", ["delivery_id"])
    op.create_index("ix_bounce_reports_subscriber_id", "bounce_reports", ["subscriber_id"])
    op.create_table(
        "suppressions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=True),
        sa.Column(
            "reason",
            _enum("hard_bounces", "soft_bounces", "complaint", name="suppressionreason"),
            nullable=False,
        ),
        sa.Column("source", sa.String(40), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("report_id", sa.Integer(), nullable=True),
        sa.Column("created_at", UTC(), nullable=False),
        sa.Column("lifted_at", UTC(), nullable=True),
        sa.Column("lifted_by", sa.String(320), nullable=True),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            ondelete="SET NULL",
            name="fk_suppressions_subscriber_id_subscribers",
        ),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["bounce_reports.id"],
            ondelete="SET NULL",
            name="fk_suppressions_report_id_bounce_reports",
        ),
    )
    op.create_index("ix_suppressions_email", "suppressions", ["email"])
    op.create_index("ix_suppressions_subscriber_id", "suppressions", ["subscriber_id"])
    op.create_index("ix_suppressions_created_at", "suppressions", ["created_at"])
    # Addresses suppressed at send time before this revision: a row each, so ops sees them.
    op.execute(
        sa.text(
            "INSERT INTO suppressions (email, subscriber_id, reason, source, detail, created_at) "
            "SELECT email, id, 'hard_bounces', 'smtp', COALESCE(status_reason, ''), "
            "COALESCE(status_changed_at, created_at) FROM subscribers WHERE status = 'bounced'"
        )
    )


def downgrade() -> None:
    op.drop_table("suppressions")
    op.drop_table("bounce_reports")
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("bounces_forgiven_at")
