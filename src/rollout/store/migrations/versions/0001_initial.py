"""The first schema: deployments, steps, checks, samples, incidents, approvals, follow-ups,
locks and the append-only audit trail.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A migration is a snapshot: it spells its columns out instead of importing schema.py,
# so that later changes to schema.py never rewrite what an old database went through.
TIME = sa.DateTime(timezone=True)

_SQLITE_TRIGGERS = [
    """CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
       BEGIN SELECT RAISE(ABORT, 'audit is append-only: rows cannot be changed'); END""",
    """CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
       BEGIN SELECT RAISE(ABORT, 'audit is append-only: rows cannot be deleted'); END""",
]

_POSTGRESQL_TRIGGERS = [
    """CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN RAISE EXCEPTION 'audit is append-only: % refused', TG_OP; END $$""",
    """CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit
       FOR EACH ROW EXECUTE FUNCTION audit_append_only()""",
    """CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
       FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()""",
]


def _id() -> sa.Column[int]:
    return sa.Column("id", sa.Integer, primary_key=True)


def _deployment_fk(*, nullable: bool) -> sa.Column[int]:
    return sa.Column(
        "deployment_id", sa.Integer, sa.ForeignKey("deployments.id"), nullable=nullable
    )


def upgrade() -> None:
    _deployments()
    _steps_and_checks()
    _monitoring()
    _people_and_locks()
    _audit()


def _deployments() -> None:
    op.create_table(
        "deployments",
        _id(),
        sa.Column("app", sa.String, nullable=False),
        sa.Column("env", sa.String, nullable=False),
        sa.Column("kind", sa.String, nullable=False),
        sa.Column("tag", sa.String, nullable=False),
        sa.Column("previous_tag", sa.String),
        sa.Column("commit_sha", sa.String),
        sa.Column("committed_at", TIME),
        sa.Column("merged_at", TIME),
        sa.Column("actor", sa.String, nullable=False),
        sa.Column("roles", sa.JSON, nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("started_at", TIME, nullable=False),
        sa.Column("finished_at", TIME),
        sa.Column("reason", sa.Text),
        sa.Column("failed_host", sa.String),
        sa.Column("failed_step", sa.String),
        sa.Column("rollback_of", sa.Integer, sa.ForeignKey("deployments.id")),
    )
    op.create_index("ix_deployments_env_started_at", "deployments", ["env", "started_at"])
    op.create_index(
        "ix_deployments_app_env_started_at", "deployments", ["app", "env", "started_at"]
    )


def _steps_and_checks() -> None:
    op.create_table(
        "steps",
        _id(),
        _deployment_fk(nullable=False),
        sa.Column("phase", sa.String, nullable=False),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("host", sa.String),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("started_at", TIME, nullable=False),
        sa.Column("finished_at", TIME),
        sa.Column("output", sa.Text, nullable=False),
    )
    op.create_index("ix_steps_deployment_id", "steps", ["deployment_id"])
    op.create_table(
        "check_results",
        _id(),
        _deployment_fk(nullable=True),
        sa.Column("env", sa.String, nullable=False),
        sa.Column("phase", sa.String, nullable=False),
        sa.Column("check_id", sa.String, nullable=False),
        sa.Column("host", sa.String),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("threshold", sa.Text, nullable=False),
        sa.Column("evidence", sa.Text, nullable=False),
        sa.Column("remedy", sa.Text, nullable=False),
        sa.Column("recorded_at", TIME, nullable=False),
    )
    op.create_index("ix_check_results_deployment_id", "check_results", ["deployment_id"])
    op.create_index("ix_check_results_env_recorded_at", "check_results", ["env", "recorded_at"])


def _monitoring() -> None:
    op.create_table(
        "samples",
        _id(),
        _deployment_fk(nullable=True),
        sa.Column("env", sa.String, nullable=False),
        sa.Column("metric", sa.String, nullable=False),
        sa.Column("host", sa.String),
        sa.Column("source", sa.String, nullable=False),
        sa.Column("at", TIME, nullable=False),
        sa.Column("value", sa.Float),
        sa.Column("ok", sa.Boolean),
        sa.Column("labels", sa.JSON, nullable=False),
    )
    op.create_index("ix_samples_env_metric_at", "samples", ["env", "metric", "at"])
    op.create_index("ix_samples_deployment_id", "samples", ["deployment_id"])
    op.create_table(
        "incidents",
        _id(),
        _deployment_fk(nullable=True),
        sa.Column("env", sa.String, nullable=False),
        sa.Column("level", sa.Integer, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("symptoms", sa.Text, nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("impact_start", TIME),
        sa.Column("detected_at", TIME, nullable=False),
        sa.Column("acknowledged_at", TIME),
        sa.Column("acknowledged_by", sa.String),
        sa.Column("mitigated_at", TIME),
        sa.Column("resolved_at", TIME),
        sa.Column("action", sa.Text),
    )
    op.create_index("ix_incidents_env_detected_at", "incidents", ["env", "detected_at"])
    op.create_index("ix_incidents_deployment_id", "incidents", ["deployment_id"])


def _people_and_locks() -> None:
    op.create_table(
        "approvals",
        _id(),
        sa.Column("env", sa.String, nullable=False),
        sa.Column("tag", sa.String, nullable=False),
        sa.Column("person", sa.String, nullable=False),
        sa.Column("role", sa.String, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("kind", sa.String, nullable=False, server_default="sign-off"),
        sa.Column("approved_at", TIME, nullable=False),
    )
    op.create_index("ix_approvals_env_tag", "approvals", ["env", "tag"])
    op.create_table(
        "follow_ups",
        _id(),
        _deployment_fk(nullable=False),
        sa.Column("activity", sa.Text, nullable=False),
        sa.Column("owner", sa.String),
        sa.Column("due_at", TIME, nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("done_at", TIME),
        sa.Column("result", sa.Text),
    )
    op.create_index("ix_follow_ups_deployment_id", "follow_ups", ["deployment_id"])
    op.create_index("ix_follow_ups_status_due_at", "follow_ups", ["status", "due_at"])
    op.create_table(
        "locks",
        sa.Column("env", sa.String, primary_key=True),
        sa.Column("holder", sa.String, nullable=False),
        sa.Column("machine", sa.String, nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("token", sa.String, nullable=False),
        sa.Column("tag", sa.String),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("acquired_at", TIME, nullable=False),
    )


def _audit() -> None:
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("at", TIME, nullable=False),
        sa.Column("actor", sa.String, nullable=False),
        sa.Column("action", sa.String, nullable=False),
        sa.Column("subject", sa.String, nullable=False),
        sa.Column("details", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    # The database itself refuses edits, so changing history takes deliberate DDL, which the
    # hash chain then exposes.
    dialect = op.get_bind().dialect.name
    for statement in _SQLITE_TRIGGERS if dialect == "sqlite" else _POSTGRESQL_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    # Children before parents, for the foreign keys; dropping audit drops its triggers.
    for table in ("audit", "locks", "follow_ups", "approvals", "incidents", "samples"):
        op.drop_table(table)
    for table in ("check_results", "steps", "deployments"):
        op.drop_table(table)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION audit_append_only()")
