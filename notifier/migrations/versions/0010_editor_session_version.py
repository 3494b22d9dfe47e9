"""editors: a session version, so logout and a new password end every session

Sessions are signed cookies holding the editor's id: a copied cookie kept working after
logout and after `notifier reset-password`. Each session now also holds the editor's
session version, and logout, a password change or disabling the account raise it.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 20:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("editors") as batch:
        batch.add_column(
            sa.Column("session_version", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("editors") as batch:
        batch.drop_column("session_version")
