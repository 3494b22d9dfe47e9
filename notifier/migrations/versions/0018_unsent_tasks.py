"""unsent_tasks: what the broker did not take is kept until a worker hands it over

A chunk, a batch's retry or a fan-out queued while the broker was down (or unreachable) was
lost to the failed publish: the rows said "with the broker", and only the sweeper found the
work again, minutes later. Each such task is now a row with its cause; the workers hand it
over within seconds of the broker answering, and the dashboard, `notifier status` and
/metrics show it.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-05 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from notifier.timeutil import UTCDateTime

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "unsent_tasks",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("task_name", sa.String(200), nullable=False),
        sa.Column("arguments", sa.Text(), nullable=False),
        sa.Column("deliveries", sa.Integer(), nullable=False),
        sa.Column("cause", sa.Text(), nullable=False),
        sa.Column("kept_at", UTCDateTime(), nullable=False),
        sa.Column("run_at", UTCDateTime(), nullable=False),
        sa.Column("turn_at", UTCDateTime(), nullable=False),
        sa.Column("handed_over_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_unsent_tasks")),
    )
    op.create_index(op.f("ix_unsent_tasks_kept_at"), "unsent_tasks", ["kept_at"])
    op.create_index(
        "ix_unsent_tasks_waiting",
        "unsent_tasks",
        ["id"],
        postgresql_where=sa.text("handed_over_at IS NULL"),
        sqlite_where=sa.text("handed_over_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_unsent_tasks_waiting", table_name="unsent_tasks")
    op.drop_index(op.f("ix_unsent_tasks_kept_at"), table_name="unsent_tasks")
    op.drop_table("unsent_tasks")
