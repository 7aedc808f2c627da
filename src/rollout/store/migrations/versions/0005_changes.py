"""The changes each deployment ships, and lead times derived from them.

Until now a deployment carried one commit (``deployments.commit_sha``), and ``lead_times``
(0004) was derived from that one commit. A deployment ships every commit since the previous
one (``rollout deploy --repo``; rollout.changes), each a change with its own lead time:

- ``changes``: one row per (deployment, commit) with its commit and merge times. Indexed by
  (env, sha), which a change's lead time is recomputed by, and uniquely by (deployment, sha)
  (a deployment records a commit once; also how a deployment's changes are found).
- ``lead_times`` keeps its shape but is derived from ``changes``: a change (env, sha) is dated
  by the first production deployment that recorded it (kind ``deploy``, status ``succeeded``
  or ``rolled_back``, by ``finished_at``), its commit time the earliest ``committed_at``
  those deployments recorded for it and its merge time the earliest ``merged_at``; the commit
  clock starts at the earlier of the two (a squash commit is stamped at or after its merge).

Triggers keep it right on every write, whoever writes:

- on ``changes``: a change added, corrected or removed recomputes its (env, sha); one added
  while its deployment still runs needs nothing yet (it counts from that deployment's finish);
- on ``deployments``: a deployment finishing, or corrected (status, kind, finish, env),
  recomputes each change it recorded; a corrected environment is carried to its changes.

On SQLite those are row triggers. On PostgreSQL the ``changes`` triggers run once per
statement over its transition tables (a bulk COPY recomputes each change once, in one
statement), the ``deployments`` one per row (a deployment is updated one at a time). The 0004
triggers that derived lead times from ``deployments.commit_sha`` are dropped, with the index
by (env, commit_sha) they used. The column stays: it is the deployed commit, the start of the
next deployment's range (``Store.last_commit``).

The upgrade records one change per deployment that has a commit and its commit time (what
0004 derived lead times from) and recomputes ``lead_times`` from them: the same lead times.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A migration is a snapshot: it spells its columns and its SQL out (see 0001).
TIME = sa.DateTime(timezone=True)
STATUSES = "('succeeded', 'rolled_back')"


def _production(row: str) -> str:
    """A deployment that reached production (rollout.kpi.dora), as a row's condition."""
    return f"{row}.kind = 'deploy' AND {row}.status IN {STATUSES}"


# Each change of ``{keys}`` (a condition on c) dated by its first production deployment.
_FIRST = f"""SELECT c.env, c.sha, min(d.finished_at) AS deployed,
                    min(c.committed_at) AS committed, min(c.merged_at) AS merged
             FROM changes AS c JOIN deployments AS d ON d.id = c.deployment_id
             WHERE {{keys}} AND {_production("d")} AND d.finished_at IS NOT NULL
             GROUP BY c.env, c.sha"""
# The commit clock starts at the earlier of commit and merge: the rule rollout.kpi.dora states.
_START = "CASE WHEN merged < committed THEN merged ELSE committed END"
_INSERT = "INSERT INTO lead_times (env, commit_sha, deployed_at, from_commit, from_merge)"
_SQLITE_LEAD_TIMES = f"""{_INSERT}
    SELECT env, sha, deployed,
           (julianday(deployed) - julianday({_START})) * 86400.0,
           (julianday(deployed) - julianday(merged)) * 86400.0
    FROM ({_FIRST}) AS first"""
_POSTGRESQL_LEAD_TIMES = f"""{_INSERT}
    SELECT env, sha, deployed,
           extract(epoch FROM deployed - {_START})::float8,
           extract(epoch FROM deployed - merged)::float8
    FROM ({_FIRST}) AS first"""


# --- SQLite: row triggers ---------------------------------------------------------------------


def _sqlite_refresh(row: str) -> str:
    """Recompute the change of ``row`` (NEW or OLD of ``changes``)."""
    return (
        f"DELETE FROM lead_times WHERE env = {row}.env AND commit_sha = {row}.sha;\n"
        + _SQLITE_LEAD_TIMES.replace("{keys}", f"c.env = {row}.env AND c.sha = {row}.sha")
        + ";\n"
    )


def _sqlite_refresh_deployment(row: str) -> str:
    """Recompute every change that the deployment ``row`` (NEW or OLD) recorded."""
    its = f"(SELECT env, sha FROM changes WHERE deployment_id = {row}.id)"
    return (
        f"DELETE FROM lead_times WHERE (env, commit_sha) IN {its};\n"
        + _SQLITE_LEAD_TIMES.replace("{keys}", f"(c.env, c.sha) IN {its}")
        + ";\n"
    )


_SQLITE_TRIGGERS = [
    # Recorded while its deployment runs: nothing to do until the deployment finishes.
    f"""CREATE TRIGGER lead_times_change_insert AFTER INSERT ON changes
        WHEN EXISTS (SELECT 1 FROM deployments AS d WHERE d.id = NEW.deployment_id
                     AND {_production("d")} AND d.finished_at IS NOT NULL)
        BEGIN {_sqlite_refresh("NEW")} END""",
    f"""CREATE TRIGGER lead_times_change_update
        AFTER UPDATE OF deployment_id, env, sha, committed_at, merged_at ON changes
        BEGIN {_sqlite_refresh("OLD")} {_sqlite_refresh("NEW")} END""",
    f"""CREATE TRIGGER lead_times_change_delete AFTER DELETE ON changes
        BEGIN {_sqlite_refresh("OLD")} END""",
    # A corrected environment moves the deployment's changes (their trigger recomputes the
    # old and the new keys); then its changes are recomputed for its new status or finish.
    f"""CREATE TRIGGER lead_times_deployment_update
        AFTER UPDATE OF env, kind, status, finished_at ON deployments
        WHEN ({_production("OLD")}) OR ({_production("NEW")}) OR OLD.env IS NOT NEW.env
        BEGIN
            UPDATE changes SET env = NEW.env WHERE deployment_id = NEW.id AND env <> NEW.env;
            {_sqlite_refresh_deployment("NEW")}
        END""",
    # Foreign keys keep a deployment with changes from being deleted, where they are
    # enforced; the sqlite3 shell does not enforce them by default.
    f"""CREATE TRIGGER lead_times_deployment_delete AFTER DELETE ON deployments
        WHEN {_production("OLD")}
        BEGIN {_sqlite_refresh_deployment("OLD")} END""",
]


# --- PostgreSQL: statement triggers on changes, row triggers on deployments -------------------

_KEYS = "(SELECT env, sha FROM unnest(envs, shas) AS k(env, sha))"

_POSTGRESQL_TRIGGERS = [
    # Deployments of one environment take its lock in turn, so two writers hardly ever
    # recompute the same change at once; if they do, the later one's row stands rather than
    # its write failing on the key.
    f"""CREATE FUNCTION lead_times_refresh(envs text[], shas text[]) RETURNS void
        LANGUAGE sql AS $$
        DELETE FROM lead_times WHERE (env, commit_sha) IN {_KEYS};
        {_POSTGRESQL_LEAD_TIMES.replace("{keys}", f"(c.env, c.sha) IN {_KEYS}")}
        ON CONFLICT (env, commit_sha) DO UPDATE SET deployed_at = excluded.deployed_at,
            from_commit = excluded.from_commit, from_merge = excluded.from_merge;
        $$""",
    f"""CREATE FUNCTION lead_times_changes() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'INSERT' THEN  -- those whose deployment already finished
                PERFORM lead_times_refresh(array_agg(env), array_agg(sha)) FROM (
                    SELECT DISTINCT a.env, a.sha FROM added AS a
                    JOIN deployments AS d ON d.id = a.deployment_id
                    WHERE {_production("d")} AND d.finished_at IS NOT NULL) AS k;
            ELSIF TG_OP = 'UPDATE' THEN
                PERFORM lead_times_refresh(array_agg(env), array_agg(sha)) FROM (
                    SELECT env, sha FROM added UNION SELECT env, sha FROM removed) AS k;
            ELSE
                PERFORM lead_times_refresh(array_agg(env), array_agg(sha))
                FROM (SELECT DISTINCT env, sha FROM removed) AS k;
            END IF;
            RETURN NULL;
        END $$""",
    """CREATE TRIGGER lead_times_change_insert AFTER INSERT ON changes
        REFERENCING NEW TABLE AS added
        FOR EACH STATEMENT EXECUTE FUNCTION lead_times_changes()""",
    """CREATE TRIGGER lead_times_change_update AFTER UPDATE ON changes
        REFERENCING OLD TABLE AS removed NEW TABLE AS added
        FOR EACH STATEMENT EXECUTE FUNCTION lead_times_changes()""",
    """CREATE TRIGGER lead_times_change_delete AFTER DELETE ON changes
        REFERENCING OLD TABLE AS removed
        FOR EACH STATEMENT EXECUTE FUNCTION lead_times_changes()""",
    # A deployment with changes cannot be deleted (the foreign key): updates only.
    f"""CREATE FUNCTION lead_times_deployment() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.env IS DISTINCT FROM OLD.env THEN  -- their trigger recomputes both keys
                UPDATE changes SET env = NEW.env WHERE deployment_id = NEW.id;
            END IF;
            IF ({_production("OLD")}) OR ({_production("NEW")}) THEN
                PERFORM lead_times_refresh(array_agg(env), array_agg(sha))
                FROM changes WHERE deployment_id = NEW.id;
            END IF;
            RETURN NULL;
        END $$""",
    """CREATE TRIGGER lead_times_deployment
        AFTER UPDATE OF env, kind, status, finished_at ON deployments
        FOR EACH ROW EXECUTE FUNCTION lead_times_deployment()""",
    """CREATE TRIGGER lead_times_changes_truncated AFTER TRUNCATE ON changes
        FOR EACH STATEMENT EXECUTE FUNCTION kpi_derived_truncated()""",
]


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    _drop_0004_triggers(sqlite)
    op.drop_index("ix_deployments_env_commit_sha", "deployments")
    op.create_table(
        "changes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("deployment_id", sa.Integer, sa.ForeignKey("deployments.id"), nullable=False),
        sa.Column("env", sa.String, nullable=False),
        sa.Column("sha", sa.String, nullable=False),
        sa.Column("committed_at", TIME, nullable=False),
        sa.Column("merged_at", TIME),
    )
    op.create_index("ix_changes_env_sha", "changes", ["env", "sha"])
    op.create_index(
        "ix_changes_deployment_id_sha", "changes", ["deployment_id", "sha"], unique=True
    )
    op.execute(
        """INSERT INTO changes (deployment_id, env, sha, committed_at, merged_at)
           SELECT id, env, commit_sha, committed_at, merged_at FROM deployments
           WHERE commit_sha IS NOT NULL AND committed_at IS NOT NULL ORDER BY id"""
    )
    op.execute("DELETE FROM lead_times")
    op.execute((_SQLITE_LEAD_TIMES if sqlite else _POSTGRESQL_LEAD_TIMES).replace("{keys}", "true"))
    if not sqlite:  # TRUNCATE of changes empties lead_times too
        op.execute(_TRUNCATED.format(tables="('deployments', 'changes')"))
    for statement in _SQLITE_TRIGGERS if sqlite else _POSTGRESQL_TRIGGERS:
        op.execute(statement)


# kpi_derived_truncated (0004): what was derived from an emptied table goes with it.
_TRUNCATED = """CREATE OR REPLACE FUNCTION kpi_derived_truncated() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_TABLE_NAME IN {tables} THEN
            DELETE FROM lead_times;
        ELSE
            DELETE FROM sample_hours;
        END IF;
        RETURN NULL;
    END $$"""


def _drop_0004_triggers(sqlite: bool) -> None:
    if sqlite:
        for event in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER lead_times_{event}")
    else:
        op.execute("DROP TRIGGER lead_times_follow ON deployments")
        op.execute("DROP FUNCTION lead_times_follow()")
        op.execute("DROP FUNCTION lead_times_refresh(text, text)")


def downgrade() -> None:
    """Back to 0004: lead times from each deployment's own commit, by 0004's triggers."""
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        for name in ("change_insert", "change_update", "change_delete"):
            op.execute(f"DROP TRIGGER lead_times_{name}")
        op.execute("DROP TRIGGER lead_times_deployment_update")
        op.execute("DROP TRIGGER lead_times_deployment_delete")
    else:
        op.execute("DROP TRIGGER lead_times_changes_truncated ON changes")
        op.execute("DROP TRIGGER lead_times_deployment ON deployments")
        for name in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER lead_times_change_{name} ON changes")
        op.execute("DROP FUNCTION lead_times_deployment()")
        op.execute("DROP FUNCTION lead_times_changes()")
        op.execute("DROP FUNCTION lead_times_refresh(text[], text[])")
        op.execute(_TRUNCATED.format(tables="('deployments')"))
    op.drop_index("ix_changes_deployment_id_sha", "changes")
    op.drop_index("ix_changes_env_sha", "changes")
    op.drop_table("changes")
    op.create_index("ix_deployments_env_commit_sha", "deployments", ["env", "commit_sha"])
    for statement in _SQLITE_0004 if sqlite else _POSTGRESQL_0004:
        op.execute(statement)
    op.execute("DELETE FROM lead_times")
    lead_times = _SQLITE_0004_LEAD_TIMES if sqlite else _POSTGRESQL_0004_LEAD_TIMES
    op.execute(lead_times.replace("{key}", "commit_sha IS NOT NULL"))


# --- 0004's derivation from deployments.commit_sha, for the downgrade --------------------------

_0004_FIRST = f"""SELECT env, commit_sha, min(finished_at) AS deployed,
                    min(committed_at) AS committed, min(merged_at) AS merged
             FROM deployments
             WHERE {{key}} AND {_production("deployments")} AND finished_at IS NOT NULL
             GROUP BY env, commit_sha"""
_SQLITE_0004_LEAD_TIMES = f"""{_INSERT}
    SELECT env, commit_sha, deployed,
           (julianday(deployed) - julianday({_START})) * 86400.0,
           (julianday(deployed) - julianday(merged)) * 86400.0
    FROM ({_0004_FIRST}) AS first"""
_POSTGRESQL_0004_LEAD_TIMES = f"""{_INSERT}
    SELECT env, commit_sha, deployed,
           extract(epoch FROM deployed - {_START})::float8,
           extract(epoch FROM deployed - merged)::float8
    FROM ({_0004_FIRST}) AS first"""


def _0004_production(row: str) -> str:
    return f"{row}.commit_sha IS NOT NULL AND {_production(row)}"


def _0004_refresh(row: str) -> str:
    key = f"env = {row}.env AND commit_sha = {row}.commit_sha"
    derive = _SQLITE_0004_LEAD_TIMES.replace("{key}", key)
    return f"DELETE FROM lead_times WHERE {key};\n{derive};\n"


_0004_COLUMNS = "env, kind, status, commit_sha, committed_at, merged_at, finished_at"
_SQLITE_0004 = [
    f"""CREATE TRIGGER lead_times_insert AFTER INSERT ON deployments
        WHEN {_0004_production("NEW")}
        BEGIN {_0004_refresh("NEW")} END""",
    f"""CREATE TRIGGER lead_times_update AFTER UPDATE OF {_0004_COLUMNS} ON deployments
        WHEN ({_0004_production("OLD")}) OR ({_0004_production("NEW")})
        BEGIN {_0004_refresh("OLD")} {_0004_refresh("NEW")} END""",
    f"""CREATE TRIGGER lead_times_delete AFTER DELETE ON deployments
        WHEN {_0004_production("OLD")}
        BEGIN {_0004_refresh("OLD")} END""",
]
_POSTGRESQL_0004 = [
    f"""CREATE FUNCTION lead_times_refresh(key_env text, key_sha text) RETURNS void
        LANGUAGE sql AS $$
        DELETE FROM lead_times WHERE env = key_env AND commit_sha = key_sha;
        {_POSTGRESQL_0004_LEAD_TIMES.replace("{key}", "env = key_env AND commit_sha = key_sha")}
        ON CONFLICT (env, commit_sha) DO UPDATE SET deployed_at = excluded.deployed_at,
            from_commit = excluded.from_commit, from_merge = excluded.from_merge;
        $$""",
    f"""CREATE FUNCTION lead_times_follow() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            was boolean := TG_OP <> 'INSERT' AND {_0004_production("OLD")};
            is_now boolean := TG_OP <> 'DELETE' AND {_0004_production("NEW")};
        BEGIN
            IF was THEN
                PERFORM lead_times_refresh(OLD.env, OLD.commit_sha);
            END IF;
            IF is_now AND NOT (was AND OLD.env = NEW.env AND OLD.commit_sha = NEW.commit_sha)
            THEN
                PERFORM lead_times_refresh(NEW.env, NEW.commit_sha);
            END IF;
            RETURN NULL;
        END $$""",
    f"""CREATE TRIGGER lead_times_follow
        AFTER INSERT OR DELETE OR UPDATE OF {_0004_COLUMNS} ON deployments
        FOR EACH ROW EXECUTE FUNCTION lead_times_follow()""",
]
