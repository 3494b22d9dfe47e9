"""deliveries: which worker process noted a row queued

A planner (a fan-out, the digest planner) writes its rows already noted queued, commits,
then hands their task to the broker; killed in between, its rows looked queued to the
sweeper, which waited SWEEP_REQUEUE_AFTER_SECONDS before queueing them again. Now a note
names its process, like a claim, and once that process is known dead its rows still
waiting for a sender are queued again at once. Indexed only while a row waits.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-06 03:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None

WAITING = "status = 'pending' AND queued_by IS NOT NULL"


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("queued_by", sa.String(length=300), nullable=True))
    op.create_index("ix_deliveries_queued_by", "deliveries", ["queued_by"],
                    postgresql_where=sa.text(WAITING), sqlite_where=sa.text(WAITING))  # fmt: skip


def downgrade() -> None:
    op.drop_index("ix_deliveries_queued_by", table_name="deliveries")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("queued_by")
