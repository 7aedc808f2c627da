"""KPI facts kept by the database: each change's lead times, samples counted per hour.

``rollout kpi`` over 100 000 deployments and 1 000 000 samples (benchmarks/kpi.py) spent its
time deriving the same facts again on every run: grouping every production deployment by
commit to find each change's first deployment (then a sort of the lead times), counting half
a million samples per metric, and reading every deployment's tag and reason for "hotfix".

- ``lead_times``: one row per change (environment, commit), dated by the first production
  deployment that shipped it, with its lead times from commit and from merge in seconds.
  Indexed by date with both lead times (a window's counts, without the table), and by each
  lead time (SQLite walks that index to a percentile's rank; it has no percentile function).
- ``sample_hours``: per environment, metric and UTC hour, the samples with a value and those
  above 0 (a failed probe request). A window's counts are its whole hours from here and its
  two partial hours from ``samples``.
- Indexes on ``deployments``: by (env, commit_sha), which the triggers refresh a change by; by
  (env, finished_at, kind, status), which counts the window's production deployments and
  finds its deployment days without reading the table; and a partial index of the deployments
  whose tag or reason says "hotfix" (about 1 in 100).

Triggers keep both tables right on every write, whoever writes (the Store, a bulk COPY, a
later correction): a change is recomputed from its deployments whenever one of them is added,
finished, changed or removed, and samples add to or take from their hour. The upgrade fills
both from the rows already there.

On SQLite, a later migration that rebuilds ``deployments`` or ``samples`` (batch mode copies
the table) drops their triggers and must create them again.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A migration is a snapshot: it spells its columns and its SQL out (see 0001).
TIME = sa.DateTime(timezone=True)

# A deployment that reached production, dated by its finish (rollout.kpi.dora).
PRODUCTION = "kind = 'deploy' AND status IN ('succeeded', 'rolled_back')"
# The partial index's condition; rollout.store.schema.says_hotfix writes the same for queries.
HOTFIX = "lower(tag) LIKE '%hotfix%' OR lower(coalesce(reason, '')) LIKE '%hotfix%'"
_FIRST = f"""SELECT env, commit_sha, min(finished_at) AS deployed,
                    min(committed_at) AS committed, min(merged_at) AS merged
             FROM deployments
             WHERE {{key}} AND {PRODUCTION} AND finished_at IS NOT NULL
             GROUP BY env, commit_sha"""
# The commit clock starts at the earlier of commit and merge (a squash commit is stamped at
# or after its merge): the same rule rollout.kpi.dora states.
_START = "CASE WHEN merged < committed THEN merged ELSE committed END"

_INSERT_LEAD_TIMES = (
    "INSERT INTO lead_times (env, commit_sha, deployed_at, from_commit, from_merge)"
)
_SQLITE_LEAD_TIMES = f"""{_INSERT_LEAD_TIMES}
    SELECT env, commit_sha, deployed,
           (julianday(deployed) - julianday({_START})) * 86400.0,
           (julianday(deployed) - julianday(merged)) * 86400.0
    FROM ({_FIRST}) AS first"""
_POSTGRESQL_LEAD_TIMES = f"""{_INSERT_LEAD_TIMES}
    SELECT env, commit_sha, deployed,
           extract(epoch FROM deployed - {_START})::float8,
           extract(epoch FROM deployed - merged)::float8
    FROM ({_FIRST}) AS first"""

_SQLITE_HOUR = "strftime('%Y-%m-%d %H:00:00.000000', {at})"  # the stored text form of a time
_POSTGRESQL_HOUR = "date_trunc('hour', {at} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"


def _sqlite_refresh(row: str) -> str:
    """Statements that recompute the change of ``row`` (NEW or OLD) from its deployments."""
    key = f"env = {row}.env AND commit_sha = {row}.commit_sha"
    return (
        f"DELETE FROM lead_times WHERE {key};\n" + _SQLITE_LEAD_TIMES.replace("{key}", key) + ";\n"
    )


def _sqlite_count(row: str, sign: str) -> str:
    """The statement that adds ``row`` (NEW or OLD) to its hour, or takes it away (sign -)."""
    hour = _SQLITE_HOUR.format(at=f"{row}.at")
    return f"""INSERT INTO sample_hours (env, metric, hour, samples, above_zero)
        SELECT {row}.env, {row}.metric, {hour}, {sign}1, {sign}({row}.value > 0)
        WHERE {row}.value IS NOT NULL
        ON CONFLICT (env, metric, hour) DO UPDATE SET
            samples = samples + excluded.samples, above_zero = above_zero + excluded.above_zero;
"""


def _production(row: str) -> str:
    return (
        f"{row}.commit_sha IS NOT NULL AND {row}.kind = 'deploy'"
        f" AND {row}.status IN ('succeeded', 'rolled_back')"
    )


_LEAD_COLUMNS = "env, kind, status, commit_sha, committed_at, merged_at, finished_at"

_SQLITE_TRIGGERS = [
    f"""CREATE TRIGGER lead_times_insert AFTER INSERT ON deployments
        WHEN {_production("NEW")}
        BEGIN {_sqlite_refresh("NEW")} END""",
    f"""CREATE TRIGGER lead_times_update AFTER UPDATE OF {_LEAD_COLUMNS} ON deployments
        WHEN ({_production("OLD")}) OR ({_production("NEW")})
        BEGIN {_sqlite_refresh("OLD")} {_sqlite_refresh("NEW")} END""",
    f"""CREATE TRIGGER lead_times_delete AFTER DELETE ON deployments
        WHEN {_production("OLD")}
        BEGIN {_sqlite_refresh("OLD")} END""",
    f"""CREATE TRIGGER sample_hours_insert AFTER INSERT ON samples
        WHEN NEW.value IS NOT NULL
        BEGIN {_sqlite_count("NEW", "+")} END""",
    f"""CREATE TRIGGER sample_hours_update AFTER UPDATE OF env, metric, at, value ON samples
        BEGIN {_sqlite_count("OLD", "-")} {_sqlite_count("NEW", "+")} END""",
    f"""CREATE TRIGGER sample_hours_delete AFTER DELETE ON samples
        WHEN OLD.value IS NOT NULL
        BEGIN {_sqlite_count("OLD", "-")} END""",
]


def _postgresql_count(rows: str, sign: str) -> str:
    """Adds a statement's ``rows`` (a transition table) to their hours, or takes them away."""
    hour = _POSTGRESQL_HOUR.format(at="at")
    return f"""INSERT INTO sample_hours (env, metric, hour, samples, above_zero)
        SELECT env, metric, {hour}, {sign}count(*), {sign}count(*) FILTER (WHERE value > 0)
        FROM {rows} WHERE value IS NOT NULL GROUP BY 1, 2, 3
        ON CONFLICT (env, metric, hour) DO UPDATE SET
            samples = sample_hours.samples + excluded.samples,
            above_zero = sample_hours.above_zero + excluded.above_zero;"""


_POSTGRESQL_TRIGGERS = [
    # Deployments of one environment take its lock in turn, so two writers hardly ever
    # refresh the same change at once; if they do, the later one's row stands rather than
    # its write failing on the key.
    f"""CREATE FUNCTION lead_times_refresh(key_env text, key_sha text) RETURNS void
        LANGUAGE sql AS $$
        DELETE FROM lead_times WHERE env = key_env AND commit_sha = key_sha;
        {_POSTGRESQL_LEAD_TIMES.replace("{key}", "env = key_env AND commit_sha = key_sha")}
        ON CONFLICT (env, commit_sha) DO UPDATE SET deployed_at = excluded.deployed_at,
            from_commit = excluded.from_commit, from_merge = excluded.from_merge;
        $$""",
    f"""CREATE FUNCTION lead_times_follow() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            was boolean := TG_OP <> 'INSERT' AND {_production("OLD")};
            is_now boolean := TG_OP <> 'DELETE' AND {_production("NEW")};
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
        AFTER INSERT OR DELETE OR UPDATE OF {_LEAD_COLUMNS} ON deployments
        FOR EACH ROW EXECUTE FUNCTION lead_times_follow()""",
    # Once per statement over its rows: a bulk insert (COPY) adds each hour once.
    f"""CREATE FUNCTION sample_hours_follow() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP IN ('DELETE', 'UPDATE') THEN
                {_postgresql_count("removed", "-")}
            END IF;
            IF TG_OP IN ('INSERT', 'UPDATE') THEN
                {_postgresql_count("added", "")}
            END IF;
            RETURN NULL;
        END $$""",
    """CREATE TRIGGER sample_hours_insert AFTER INSERT ON samples
        REFERENCING NEW TABLE AS added
        FOR EACH STATEMENT EXECUTE FUNCTION sample_hours_follow()""",
    """CREATE TRIGGER sample_hours_update AFTER UPDATE ON samples
        REFERENCING OLD TABLE AS removed NEW TABLE AS added
        FOR EACH STATEMENT EXECUTE FUNCTION sample_hours_follow()""",
    """CREATE TRIGGER sample_hours_delete AFTER DELETE ON samples
        REFERENCING OLD TABLE AS removed
        FOR EACH STATEMENT EXECUTE FUNCTION sample_hours_follow()""",
    # TRUNCATE fires no delete trigger: empty what was derived from the emptied table.
    """CREATE FUNCTION kpi_derived_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_TABLE_NAME = 'deployments' THEN
                DELETE FROM lead_times;
            ELSE
                DELETE FROM sample_hours;
            END IF;
            RETURN NULL;
        END $$""",
    """CREATE TRIGGER lead_times_truncated AFTER TRUNCATE ON deployments
        FOR EACH STATEMENT EXECUTE FUNCTION kpi_derived_truncated()""",
    """CREATE TRIGGER sample_hours_truncated AFTER TRUNCATE ON samples
        FOR EACH STATEMENT EXECUTE FUNCTION kpi_derived_truncated()""",
]


def upgrade() -> None:
    op.create_table(
        "lead_times",
        sa.Column("env", sa.String, primary_key=True),
        sa.Column("commit_sha", sa.String, primary_key=True),
        sa.Column("deployed_at", TIME, nullable=False),
        sa.Column("from_commit", sa.Float),
        sa.Column("from_merge", sa.Float),
    )
    op.create_index(
        "ix_lead_times_env_deployed_at",
        "lead_times",
        ["env", "deployed_at", "from_commit", "from_merge"],
    )
    for column in ("from_commit", "from_merge"):
        op.create_index(f"ix_lead_times_env_{column}", "lead_times", ["env", column, "deployed_at"])
    op.create_table(
        "sample_hours",
        sa.Column("env", sa.String, primary_key=True),
        sa.Column("metric", sa.String, primary_key=True),
        sa.Column("hour", TIME, primary_key=True),
        sa.Column("samples", sa.Integer, nullable=False),
        sa.Column("above_zero", sa.Integer, nullable=False),
    )
    op.create_index("ix_deployments_env_commit_sha", "deployments", ["env", "commit_sha"])
    op.create_index(
        "ix_deployments_env_finished_at", "deployments", ["env", "finished_at", "kind", "status"]
    )
    op.create_index(
        "ix_deployments_hotfix",
        "deployments",
        ["env", "started_at"],
        sqlite_where=sa.text(HOTFIX),
        postgresql_where=sa.text(HOTFIX),
    )
    sqlite = op.get_bind().dialect.name == "sqlite"
    for statement in _SQLITE_TRIGGERS if sqlite else _POSTGRESQL_TRIGGERS:
        op.execute(statement)
    lead_times = _SQLITE_LEAD_TIMES if sqlite else _POSTGRESQL_LEAD_TIMES
    op.execute(lead_times.replace("{key}", "commit_sha IS NOT NULL"))
    hour = (_SQLITE_HOUR if sqlite else _POSTGRESQL_HOUR).format(at="at")
    op.execute(
        f"""INSERT INTO sample_hours (env, metric, hour, samples, above_zero)
            SELECT env, metric, {hour}, count(*),
                   sum(CASE WHEN value > 0 THEN 1 ELSE 0 END)
            FROM samples WHERE value IS NOT NULL GROUP BY env, metric, {hour}"""
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in (
            "lead_times_insert",
            "lead_times_update",
            "lead_times_delete",
            "sample_hours_insert",
            "sample_hours_update",
            "sample_hours_delete",
        ):
            op.execute(f"DROP TRIGGER {name}")
    else:
        op.execute("DROP TRIGGER lead_times_follow ON deployments")
        op.execute("DROP TRIGGER lead_times_truncated ON deployments")
        for event in ("insert", "update", "delete", "truncated"):
            op.execute(f"DROP TRIGGER sample_hours_{event} ON samples")
        op.execute("DROP FUNCTION kpi_derived_truncated()")
        op.execute("DROP FUNCTION lead_times_follow()")
        op.execute("DROP FUNCTION lead_times_refresh(text, text)")
        op.execute("DROP FUNCTION sample_hours_follow()")
    op.drop_index("ix_deployments_hotfix", "deployments")
    op.drop_index("ix_deployments_env_finished_at", "deployments")
    op.drop_index("ix_deployments_env_commit_sha", "deployments")
    op.drop_table("sample_hours")
    for column in ("from_commit", "from_merge"):
        op.drop_index(f"ix_lead_times_env_{column}", "lead_times")
    op.drop_index("ix_lead_times_env_deployed_at", "lead_times")
    op.drop_table("lead_times")
