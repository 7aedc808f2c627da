"""Indexes for the KPIs: samples read in value order, rollbacks found by what they undo.

``rollout kpi`` takes a p95 by walking samples in value order (a covering index: no sort and
no table reads over a million rows) and finds the deployments a rollback undid.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_samples_env_metric_value_at", "samples", ["env", "metric", "value", "at"])
    op.create_index("ix_deployments_rollback_of", "deployments", ["rollback_of"])


def downgrade() -> None:
    op.drop_index("ix_deployments_rollback_of", "deployments")
    op.drop_index("ix_samples_env_metric_value_at", "samples")
