"""The tables of rollout's own records, as SQLAlchemy Core metadata.

This is what the code queries. The migrations in ``migrations/versions`` create the same
tables and are the authority on disk; a test checks that the two agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    ColumnElement,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    FromClause,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    literal_column,
    or_,
)
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on every backend.

    PostgreSQL keeps the zone (timestamptz) but returns values in the session's zone; SQLite
    has no zone at all and returns naive values. Both are normalised to aware UTC, and naive
    values are refused on the way in because their zone would be a guess.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: rollout stores aware UTC times only")
        value = value.astimezone(UTC)
        # SQLite's text format drops the zone; store UTC wall time and re-attach UTC on read.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _id() -> Column[Any]:
    return Column("id", Integer, primary_key=True)


def _deployment_fk(*, nullable: bool) -> Column[Any]:
    return Column("deployment_id", Integer, ForeignKey("deployments.id"), nullable=nullable)


metadata = MetaData()

deployments = Table(
    "deployments",
    metadata,
    _id(),
    Column("app", String, nullable=False),
    Column("env", String, nullable=False),
    Column("kind", String, nullable=False),
    Column("tag", String, nullable=False),
    Column("previous_tag", String),
    Column("commit_sha", String),
    Column("committed_at", UTCDateTime),
    Column("merged_at", UTCDateTime),
    Column("actor", String, nullable=False),
    Column("roles", JSON, nullable=False),
    Column("status", String, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    Column("reason", Text),
    Column("failed_host", String),
    Column("failed_step", String),
    Column("rollback_of", Integer, ForeignKey("deployments.id")),
    Index("ix_deployments_env_started_at", "env", "started_at"),
    Index("ix_deployments_app_env_started_at", "app", "env", "started_at"),
    Index("ix_deployments_rollback_of", "rollback_of"),
    # KPIs (0004): the window's production deployments and days
    Index("ix_deployments_env_finished_at", "env", "finished_at", "kind", "status"),
)


def says_hotfix(table: FromClause) -> ColumnElement[bool]:
    """A deployment whose tag or reason says "hotfix" (any case), as the partial index
    ``ix_deployments_hotfix`` is written: the patterns are literals, not bound parameters, so
    that SQLite and PostgreSQL can tell a query's condition is the index's."""
    pattern: ColumnElement[str] = literal_column("'%hotfix%'")
    return or_(
        func.lower(table.c.tag).like(pattern),
        func.lower(func.coalesce(table.c.reason, literal_column("''"))).like(pattern),
    )


Index(
    "ix_deployments_hotfix",
    deployments.c.env,
    deployments.c.started_at,
    sqlite_where=says_hotfix(deployments),
    postgresql_where=says_hotfix(deployments),
)

steps = Table(
    "steps",
    metadata,
    _id(),
    _deployment_fk(nullable=False),
    Column("phase", String, nullable=False),
    Column("name", String, nullable=False),
    Column("host", String),
    Column("status", String, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    Column("output", Text, nullable=False),
    Index("ix_steps_deployment_id", "deployment_id"),
)

check_results = Table(
    "check_results",
    metadata,
    _id(),
    _deployment_fk(nullable=True),
    Column("env", String, nullable=False),
    Column("phase", String, nullable=False),
    Column("check_id", String, nullable=False),
    Column("host", String),
    Column("status", String, nullable=False),
    Column("value", Text, nullable=False),
    Column("threshold", Text, nullable=False),
    Column("evidence", Text, nullable=False),
    Column("remedy", Text, nullable=False),
    Column("recorded_at", UTCDateTime, nullable=False),
    Index("ix_check_results_deployment_id", "deployment_id"),
    Index("ix_check_results_env_recorded_at", "env", "recorded_at"),
)

samples = Table(
    "samples",
    metadata,
    _id(),
    _deployment_fk(nullable=True),
    Column("env", String, nullable=False),
    Column("metric", String, nullable=False),
    Column("host", String),
    Column("source", String, nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("value", Float),
    Column("ok", Boolean),
    Column("labels", JSON, nullable=False),
    Index("ix_samples_env_metric_at", "env", "metric", "at"),
    Index("ix_samples_deployment_id", "deployment_id"),
    Index("ix_samples_env_metric_value_at", "env", "metric", "value", "at"),  # KPIs: p95
)

incidents = Table(
    "incidents",
    metadata,
    _id(),
    _deployment_fk(nullable=True),
    Column("env", String, nullable=False),
    Column("level", Integer, nullable=False),
    Column("title", Text, nullable=False),
    Column("symptoms", Text, nullable=False),
    Column("status", String, nullable=False),
    Column("impact_start", UTCDateTime),
    Column("detected_at", UTCDateTime, nullable=False),
    Column("acknowledged_at", UTCDateTime),
    Column("acknowledged_by", String),
    Column("mitigated_at", UTCDateTime),
    Column("resolved_at", UTCDateTime),
    Column("action", Text),
    Index("ix_incidents_env_detected_at", "env", "detected_at"),
    Index("ix_incidents_deployment_id", "deployment_id"),
)

approvals = Table(
    "approvals",
    metadata,
    _id(),
    Column("env", String, nullable=False),
    Column("tag", String, nullable=False),
    Column("person", String, nullable=False),
    Column("role", String, nullable=False),
    Column("note", Text, nullable=False),
    Column("kind", String, nullable=False, server_default="sign-off"),
    Column("approved_at", UTCDateTime, nullable=False),
    Index("ix_approvals_env_tag", "env", "tag"),
)

follow_ups = Table(
    "follow_ups",
    metadata,
    _id(),
    _deployment_fk(nullable=False),
    Column("activity", Text, nullable=False),
    Column("owner", String),
    Column("due_at", UTCDateTime, nullable=False),
    Column("status", String, nullable=False),
    Column("done_at", UTCDateTime),
    Column("result", Text),
    Index("ix_follow_ups_deployment_id", "deployment_id"),
    Index("ix_follow_ups_status_due_at", "status", "due_at"),
)

# The changes (commits) each deployment ships, with their commit and merge times (0005);
# ``env`` is its deployment's, kept so by a trigger.
changes = Table(
    "changes",
    metadata,
    _id(),
    _deployment_fk(nullable=False),
    Column("env", String, nullable=False),
    Column("sha", String, nullable=False),
    Column("committed_at", UTCDateTime, nullable=False),
    Column("merged_at", UTCDateTime),
    Index("ix_changes_env_sha", "env", "sha"),  # a change's deployments, for the triggers
    Index("ix_changes_deployment_id_sha", "deployment_id", "sha", unique=True),
)

# Derived for the KPIs (migrations 0004 and 0005; triggers keep them right on every write, see
# there). Each change (commit) of an environment once, dated by the first production
# deployment that recorded it in ``changes``, with its lead times in seconds (negative: a
# clock that ran backwards).
lead_times = Table(
    "lead_times",
    metadata,
    Column("env", String, primary_key=True),
    Column("commit_sha", String, primary_key=True),
    Column("deployed_at", UTCDateTime, nullable=False),
    Column("from_commit", Float),  # from the commit, or the earlier merge (a squash commit)
    Column("from_merge", Float),
    Index("ix_lead_times_env_deployed_at", "env", "deployed_at", "from_commit", "from_merge"),
    Index("ix_lead_times_env_from_commit", "env", "from_commit", "deployed_at"),  # SQLite:
    Index("ix_lead_times_env_from_merge", "env", "from_merge", "deployed_at"),  # percentiles
)

# Per environment, metric and UTC hour: the samples with a value, and those above 0.
sample_hours = Table(
    "sample_hours",
    metadata,
    Column("env", String, primary_key=True),
    Column("metric", String, primary_key=True),
    Column("hour", UTCDateTime, primary_key=True),
    Column("samples", Integer, nullable=False),
    Column("above_zero", Integer, nullable=False),
)

# The app database's backups; the manifest (JSON) is kept whole, as written beside the dump.
backups = Table(
    "backups",
    metadata,
    _id(),
    Column("env", String, nullable=False),
    Column("kind", String, nullable=False),  # pre-deploy, manual, safety
    Column("deployment_id", Integer, ForeignKey("deployments.id")),
    Column("folder", Text, nullable=False),
    Column("database", String, nullable=False),
    Column("dump_sha256", String(64), nullable=False),
    Column("size", Integer, nullable=False),
    Column("point_in_time", UTCDateTime, nullable=False),
    Column("taken_at", UTCDateTime, nullable=False),
    Column("seconds", Float, nullable=False),
    Column("manifest", Text, nullable=False),
    Column("pruned_at", UTCDateTime),
    Index("ix_backups_env_taken_at", "env", "taken_at"),
)

# Each verification of a backup's bytes; results are found again by the dump's hash.
backup_checks = Table(
    "backup_checks",
    metadata,
    _id(),
    Column("backup_id", Integer, ForeignKey("backups.id")),
    Column("dump_sha256", String(64), nullable=False),
    Column("level", Integer, nullable=False),
    Column("status", String, nullable=False),  # verified, bad, undecided
    Column("detail", Text, nullable=False),
    Column("checked_at", UTCDateTime, nullable=False),
    Column("seconds", Float, nullable=False),
    Index("ix_backup_checks_dump_sha256", "dump_sha256"),
)

# One row per environment: the primary key is what makes acquiring the lock atomic.
locks = Table(
    "locks",
    metadata,
    Column("env", String, primary_key=True),
    Column("holder", String, nullable=False),
    Column("machine", String, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("token", String, nullable=False),
    Column("tag", String),
    Column("message", Text, nullable=False),
    Column("acquired_at", UTCDateTime, nullable=False),
)

# Ids are assigned by the writer (previous id + 1) because they are part of each row's hash;
# an autoincrement sequence could skip numbers and make a gap look like a deleted row.
audit = Table(
    "audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String, nullable=False),
    Column("action", String, nullable=False),
    Column("subject", String, nullable=False),
    Column("details", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)
