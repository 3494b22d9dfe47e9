"""deliveries: who holds a claim (worker process) and the claim's token

A claimed row names the worker process holding it, so a dead worker's rows are handed to
live workers as soon as its heartbeat goes stale, not when the lease runs out; and each
claim has a token that recording checks, so a late write from a process that lost its
claim cannot overwrite the new holder's outcome.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 20:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(length=300), nullable=True))
        batch.add_column(sa.Column("claim_token", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("claim_token")
        batch.drop_column("claimed_by")
