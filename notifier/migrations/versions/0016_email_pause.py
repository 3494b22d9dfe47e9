"""subscribers: email paused until a time

A reader may pause all email for a while (the preferences page) instead of unsubscribing:
no email is planned or sent to them until `paused_until`, and then it starts again by itself.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import notifier.timeutil

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.add_column(sa.Column("paused_until", notifier.timeutil.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("paused_until")
