"""Index digests by reader and the end of their period

The digest planner reads, for the readers of a batch, their other digests reaching into the
period (so a category moved from the daily to the weekly digest does not bring back what the
daily one carried). Digests are kept, one per reader per period: without this index that
read would visit every digest a reader ever had.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-06 01:10:00
"""

from __future__ import annotations

from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_digests_subscriber_id_until", "digests", ["subscriber_id", "until"])


def downgrade() -> None:
    op.drop_index("ix_digests_subscriber_id_until", table_name="digests")
