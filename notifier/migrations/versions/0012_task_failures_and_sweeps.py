"""task_failures and sweep_runs: no task fails silently, and the sweeper says what it re-queued

A task that failed for good (a confirmation email the server refused, a bug) left only a log
line; the sweeper's re-queues left only a warning. Both are now rows the dashboard, `notifier
status` and /metrics read, whichever process did the work.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 20:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from notifier.timeutil import UTCDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "task_failures",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("task_name", sa.String(200), nullable=False),
        sa.Column("task_id", sa.String(64), nullable=False),
        sa.Column("cause", sa.Text(), nullable=False),
        sa.Column("arguments", sa.Text(), nullable=False),
        sa.Column("failed_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_failures")),
    )
    op.create_index(op.f("ix_task_failures_failed_at"), "task_failures", ["failed_at"])
    op.create_table(
        "sweep_runs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("swept_at", UTCDateTime(), nullable=False),
        sa.Column("articles", sa.Integer(), nullable=False),
        sa.Column("alerts", sa.Integer(), nullable=False),
        sa.Column("deliveries", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sweep_runs")),
    )
    op.create_index(op.f("ix_sweep_runs_swept_at"), "sweep_runs", ["swept_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_sweep_runs_swept_at"), table_name="sweep_runs")
    op.drop_table("sweep_runs")
    op.drop_index(op.f("ix_task_failures_failed_at"), table_name="task_failures")
    op.drop_table("task_failures")
