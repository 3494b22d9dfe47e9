"""bounce reports from relays' webhooks remember the relay's event id

Amazon SES (through SNS), Postmark, SendGrid and Mailgun post each bounce or complaint until
we answer 2xx, and may post it again later: the event's id is kept, unique per source, so a
replay is recognised and applied once.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("bounce_reports") as batch:
        batch.add_column(sa.Column("event_id", sa.String(200), nullable=True))
    op.create_index(
        "uq_bounce_reports_source_event_id", "bounce_reports", ["source", "event_id"], unique=True
    )


def downgrade() -> None:
    op.drop_index("uq_bounce_reports_source_event_id", table_name="bounce_reports")
    with op.batch_alter_table("bounce_reports") as batch:
        batch.drop_column("event_id")
