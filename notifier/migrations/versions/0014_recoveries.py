"""recoveries: deliveries queued again after a fault, and why

A dead worker's claims taken over and the re-queue after a broker lost its queues were counted
only in /metrics (per process, gone at a restart). Each is now a row the dashboard and
`notifier status` read beside what the sweeper re-queued: zero in normal operation.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from notifier.timeutil import UTCDateTime

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "recoveries",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("recovered_at", UTCDateTime(), nullable=False),
        sa.Column(
            "cause",
            sa.Enum(
                "dead_worker", "broker_lost", name="recoverycause", native_enum=False, length=20
            ),
            nullable=False,
        ),
        sa.Column("deliveries", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recoveries")),
    )
    op.create_index(op.f("ix_recoveries_recovered_at"), "recoveries", ["recovered_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_recoveries_recovered_at"), table_name="recoveries")
    op.drop_table("recoveries")
