"""deliveries.outcome: how a delivery ended, as data

Whether a failure meant "the recipient is gone" was written as a "gone: " prefix of
last_error and parsed back by ops, metrics, alert progress and the bounce count. The outcome
is now a column (sent, gone, failed, skipped; NULL while the delivery may still go). Rows
already final are converted from their status and that prefix; last_error keeps its text.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

OUTCOMES = ("sent", "gone", "failed", "skipped")

# Old rows: the status says sent/skipped/failed; among failures, "gone: " marks a recipient
# that no longer exists (how notifier wrote it before this column).
CONVERSIONS = (
    ("sent", "status = 'sent'"),
    ("skipped", "status = 'skipped'"),
    ("gone", "status = 'failed' AND last_error LIKE 'gone:%'"),
    ("failed", "status = 'failed' AND (last_error IS NULL OR last_error NOT LIKE 'gone:%')"),
)


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(
            sa.Column(
                "outcome",
                sa.Enum(*OUTCOMES, name="deliveryoutcome", native_enum=False, length=20),
                nullable=True,
            )
        )
    for outcome, where in CONVERSIONS:
        op.execute(sa.text(f"UPDATE deliveries SET outcome = '{outcome}' WHERE {where}"))


def downgrade() -> None:
    # last_error still carries the "gone: " prefix, so nothing is lost going back.
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("outcome")
