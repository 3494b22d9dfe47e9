"""Quiet hours and a daily push cap per browser; alerts that override quiet hours

push_subscriptions.timezone (from the browser), quiet_start and quiet_end (local hours; both
NULL: none) say when a browser wants no push. alerts.override_quiet_hours lets an editor's
breaking alert through them. deliveries.held_until is when quiet hours held a push back to
(its next_attempt_at is then that time), and deliveries.push_day the browser's local day a
push counted toward PUSH_DAILY_CAP on, with the index that counts them.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-06 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from notifier.timeutil import UTCDateTime

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("push_subscriptions") as batch:
        batch.add_column(sa.Column("timezone", sa.String(64), nullable=False, server_default="UTC"))
        batch.add_column(sa.Column("quiet_start", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("quiet_end", sa.Integer(), nullable=True))
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(
            sa.Column(
                "override_quiet_hours", sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("held_until", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("push_day", sa.String(10), nullable=True))
        batch.create_index(
            "ix_deliveries_push_day", ["push_subscription_id", "push_day"],
            postgresql_where=sa.text("push_day IS NOT NULL"),
            sqlite_where=sa.text("push_day IS NOT NULL"),
        )  # fmt: skip


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_index("ix_deliveries_push_day")
        batch.drop_column("push_day")
        batch.drop_column("held_until")
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("override_quiet_hours")
    with op.batch_alter_table("push_subscriptions") as batch:
        batch.drop_column("quiet_end")
        batch.drop_column("quiet_start")
        batch.drop_column("timezone")
