"""Backups of the app's database and their verifications.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "backups",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("env", sa.String, nullable=False),
        sa.Column("kind", sa.String, nullable=False),
        sa.Column("deployment_id", sa.Integer, sa.ForeignKey("deployments.id")),
        sa.Column("folder", sa.Text, nullable=False),
        sa.Column("database", sa.String, nullable=False),
        sa.Column("dump_sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("point_in_time", TIME, nullable=False),
        sa.Column("taken_at", TIME, nullable=False),
        sa.Column("seconds", sa.Float, nullable=False),
        sa.Column("manifest", sa.Text, nullable=False),
        sa.Column("pruned_at", TIME),
    )
    op.create_index("ix_backups_env_taken_at", "backups", ["env", "taken_at"])
    op.create_table(
        "backup_checks",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("backup_id", sa.Integer, sa.ForeignKey("backups.id")),
        sa.Column("dump_sha256", sa.String(64), nullable=False),
        sa.Column("level", sa.Integer, nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("checked_at", TIME, nullable=False),
        sa.Column("seconds", sa.Float, nullable=False),
    )
    op.create_index("ix_backup_checks_dump_sha256", "backup_checks", ["dump_sha256"])


def downgrade() -> None:
    op.drop_index("ix_backup_checks_dump_sha256", "backup_checks")
    op.drop_table("backup_checks")
    op.drop_index("ix_backups_env_taken_at", "backups")
    op.drop_table("backups")
