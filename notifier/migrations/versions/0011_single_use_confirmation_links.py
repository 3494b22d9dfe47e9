"""subscribers: confirmation links are single-use

A confirmation link kept working after it was used, and an old one re-subscribed a reader who
had unsubscribed since. Links issued before `confirm_links_after` are refused.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 20:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import notifier.timeutil

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.add_column(
            sa.Column("confirm_links_after", notifier.timeutil.UTCDateTime(), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("confirm_links_after")
