"""Delivery retention: a summary of removed deliveries, the retention job's runs, and an
index on the deliveries' planning time

delivery_summaries counts the deliveries retention removes (per notice, channel, status,
outcome, skip reason, planned hour and ended hour), so every reader of delivery counts shows
the same figures after the rows are gone. retention_runs records each run. Retention walks
old rows in (created_at, id) order, through the index added here.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06 23:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from notifier.timeutil import UTCDateTime

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "delivery_summaries",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("notice_kind", sa.String(10), nullable=False),
        sa.Column("notice_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("created_hour", UTCDateTime(), nullable=False),
        sa.Column("ended_hour", UTCDateTime(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_delivery_summaries"),
        sa.UniqueConstraint(
            "notice_kind",
            "notice_id",
            "channel",
            "status",
            "outcome",
            "reason",
            "created_hour",
            "ended_hour",
            name="uq_delivery_summaries_key",
        ),
    )
    op.create_index("ix_delivery_summaries_ended_hour", "delivery_summaries", ["ended_hour"])
    op.create_index("ix_delivery_summaries_created_hour", "delivery_summaries", ["created_hour"])
    op.create_table(
        "retention_runs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("cutoff", UTCDateTime(), nullable=False),
        sa.Column("removed", sa.Integer(), nullable=False),
        sa.Column("batches", sa.Integer(), nullable=False),
        sa.Column("complete", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_retention_runs"),
    )
    op.create_index("ix_retention_runs_started_at", "retention_runs", ["started_at"])
    op.create_index("ix_deliveries_created_at", "deliveries", ["created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_created_at", table_name="deliveries")
    op.drop_index("ix_retention_runs_started_at", table_name="retention_runs")
    op.drop_table("retention_runs")
    op.drop_index("ix_delivery_summaries_created_hour", table_name="delivery_summaries")
    op.drop_index("ix_delivery_summaries_ended_hour", table_name="delivery_summaries")
    op.drop_table("delivery_summaries")
