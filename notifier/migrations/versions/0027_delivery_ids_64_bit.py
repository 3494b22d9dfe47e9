"""deliveries.id (and bounce_reports.delivery_id): 64-bit

Each story writes a delivery row per reader and channel, and ids are never reused: at
100,000 readers and 40 stories a day a 32-bit id runs out in about 18 months, retention or
not, and from then on no fan-out could record a row. PostgreSQL rewrites both tables (and
rebuilds their indexes) under an exclusive lock: on a ledger kept to DELIVERY_RETENTION_DAYS
that takes minutes, once (README, "Retention"). SQLite's INTEGER ids are 64-bit already.

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-06 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None


def upgrade() -> None:
    _resize("bigint")


def downgrade() -> None:
    _resize("integer")  # fails, as it must, once an id is past 32 bits


def _resize(kind: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(sa.text(f"ALTER TABLE bounce_reports ALTER COLUMN delivery_id TYPE {kind}"))
    op.execute(sa.text(f"ALTER TABLE deliveries ALTER COLUMN id TYPE {kind}"))
    sequence = op.get_bind().scalar(sa.text("SELECT pg_get_serial_sequence('deliveries', 'id')"))
    op.execute(sa.text(f"ALTER SEQUENCE {sequence} AS {kind}"))
