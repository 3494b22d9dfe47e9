"""alerts remember when their fan-out finished planning

Fan-out plans and queues an alert's deliveries a chunk at a time; until every chunk is
planned the alert is not done even if every planned delivery is sent, and a planner that
died half-way is found again by this column being empty.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 17:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import notifier.timeutil

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("fanned_out_at", notifier.timeutil.UTCDateTime(), nullable=True))
    # Alerts that were already sending or done had planned everything in one statement.
    op.execute("UPDATE alerts SET fanned_out_at = started_at WHERE started_at IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("fanned_out_at")
