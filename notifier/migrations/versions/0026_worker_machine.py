"""worker_heartbeats: the machine a worker runs on

Two live workers with one node name (two hosts or containers with the same host name) look
to each other like a restarted worker, and each hands the other's claimed rows over while
that one still sends them. A worker now refuses to start while another one is alive under
its name; the machine (host name and boot id) tells a restart on this machine from a twin.

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-06 03:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("worker_heartbeats") as batch:
        batch.add_column(sa.Column("machine", sa.String(length=300), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("worker_heartbeats") as batch:
        batch.drop_column("machine")
