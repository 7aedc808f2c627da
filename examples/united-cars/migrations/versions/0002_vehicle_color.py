"""Add a nullable color to vehicles

Expand only: the column is nullable, so the release before still reads and inserts vehicles.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("vehicles", sa.Column("color", sa.String(32), nullable=True), if_not_exists=True)


def downgrade() -> None:
    op.drop_column("vehicles", "color", if_exists=True)
