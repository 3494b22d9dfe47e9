"""deliveries: partial unique indexes, and the due index only over unsent rows

Each delivery names one notice (article or alert) and one recipient (subscriber or push
subscription), yet every row had an entry in all four unique indexes, and every change of
its status (claimed, sent) wrote four new ones. Partial indexes hold each row once; the due
index only holds rows that can still be due. Fan-out writes each row three times, so this
halves the index work per delivery.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

UNIQUE_KEYS = {
    "uq_deliveries_recipient": ("article_id", "subscriber_id"),
    "uq_deliveries_push_recipient": ("article_id", "push_subscription_id"),
    "uq_deliveries_alert_recipient": ("alert_id", "subscriber_id"),
    "uq_deliveries_alert_push_recipient": ("alert_id", "push_subscription_id"),
}
UNSENT = "status IN ('pending', 'sending')"


def _where(columns: tuple[str, ...]) -> sa.TextClause:
    return sa.text(" AND ".join(f"{column} IS NOT NULL" for column in columns))


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        for name in UNIQUE_KEYS:
            batch.drop_constraint(name, type_="unique")
        batch.drop_index("ix_deliveries_due")
    for name, columns in UNIQUE_KEYS.items():
        where = _where(columns)
        op.create_index(name, "deliveries", [*columns, "channel"], unique=True,
                        postgresql_where=where, sqlite_where=where)  # fmt: skip
    op.create_index("ix_deliveries_due", "deliveries", ["status", "next_attempt_at"],
                    postgresql_where=sa.text(UNSENT), sqlite_where=sa.text(UNSENT))  # fmt: skip


def downgrade() -> None:
    op.drop_index("ix_deliveries_due", "deliveries")
    for name in UNIQUE_KEYS:
        op.drop_index(name, "deliveries")
    with op.batch_alter_table("deliveries") as batch:
        for name, columns in UNIQUE_KEYS.items():
            batch.create_unique_constraint(name, [*columns, "channel"])
        batch.create_index("ix_deliveries_due", ["status", "next_attempt_at"])
