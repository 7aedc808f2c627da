"""Planning and applying the app's migrations against a real PostgreSQL (the throwaway cluster).

The lock-queue test is the one db-safety.md §1.4 describes: a migration waiting behind a long
open transaction must give up at lock_timeout instead of queueing every reader behind it.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
import typer
from psycopg import sql
from typer.testing import CliRunner

from rollout.cli.migrations import register
from rollout.config import MigrationsConfig
from rollout.database.lint import Kind, Severity
from rollout.database.migrate import (
    ADVISORY_LOCK,
    MigrationBlocked,
    MigrationFailed,
    MigrationStep,
    MigrationTarget,
    StepStatus,
    apply_migrations,
    plan_migrations,
)
from rollout.errors import GateFailed, LockHeld

pytestmark = pytest.mark.postgres

EXAMPLE_DIR = Path(__file__).resolve().parents[2] / "examples" / "united-cars"
EXAMPLE_MIGRATIONS = EXAMPLE_DIR / "migrations"
FAST = timedelta(milliseconds=50)


def settings(kind: str, **changes: object) -> MigrationsConfig:
    return MigrationsConfig.model_validate({"kind": kind, **changes})


def sql_folder(path: Path, files: dict[str, str]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (path / name).write_text(text)
    return path


def columns(url: str, table: str) -> list[tuple[str, str, str, str | None]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT column_name, data_type, is_nullable, column_default"
            " FROM information_schema.columns WHERE table_name = %s ORDER BY ordinal_position",
            (table,),
        ).fetchall()
    return [(str(a), str(b), str(c), None if d is None else str(d)) for a, b, c, d in rows]


def scalar(url: str, query: str) -> object:
    with psycopg.connect(url) as conn:
        row = conn.execute(query.encode()).fetchone()
    return None if row is None else row[0]


@pytest.fixture
def other_database(postgres_port: int) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex}"
    admin = f"postgresql://postgres@127.0.0.1:{postgres_port}/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield f"postgresql://postgres@127.0.0.1:{postgres_port}/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


# --- the example app's Alembic migrations ------------------------------------------------------


def test_the_example_apps_alembic_plan_lists_lints_and_classes_its_revisions(
    fresh_postgres_url: str,
) -> None:
    plan = plan_migrations(
        MigrationTarget(fresh_postgres_url, settings("alembic"), EXAMPLE_MIGRATIONS)
    )

    assert (plan.kind, plan.current, plan.head) == ("alembic", None, "0002")
    assert [(m.id, m.kind) for m in plan.pending] == [("0001", Kind.EXPAND), ("0002", Kind.EXPAND)]
    assert "CREATE TABLE IF NOT EXISTS vehicles" in plan.pending[0].sql
    assert "ADD COLUMN IF NOT EXISTS color" in plan.pending[1].sql
    # Alembic's own bookkeeping is not linted as if it were the app's schema change.
    assert not any("alembic_version" in s.sql for m in plan.pending for s in m.lint.statements)
    assert plan.errors == () and plan.ok
    (note,) = plan.pending[1].lint.findings
    assert (note.rule, note.severity) == ("require-lock-timeout", Severity.INFO)
    assert plan.verdict.previous_release_compatible
    assert not plan.verdict.rollback_needs_restore


def test_applying_the_example_reaches_the_head_and_reports_each_step(
    fresh_postgres_url: str,
) -> None:
    target = MigrationTarget(fresh_postgres_url, settings("alembic"), EXAMPLE_MIGRATIONS)
    steps: list[MigrationStep] = []

    result = apply_migrations(target, plan_migrations(target), on_step=steps.append)

    assert [(s.migration, s.status, s.attempt) for s in steps] == [
        ("0001", StepStatus.APPLIED, 1),
        ("0002", StepStatus.APPLIED, 1),
    ]
    assert (result.before, result.head, result.applied) == (None, "0002", ("0001", "0002"))
    assert scalar(fresh_postgres_url, "SELECT version_num FROM alembic_version") == "0002"
    assert "color" in [c[0] for c in columns(fresh_postgres_url, "vehicles")]
    again = plan_migrations(target)
    assert (again.current, again.pending) == ("0002", ())


def test_revision_0001_is_the_table_the_app_makes_and_upgrades_a_database_the_app_made(
    fresh_postgres_url: str, other_database: str
) -> None:
    sys.path.insert(0, str(EXAMPLE_DIR))
    try:
        from united_cars.db import create_schema, make_engine
    finally:
        sys.path.remove(str(EXAMPLE_DIR))
    engine = make_engine(other_database)
    create_schema(engine)
    engine.dispose()
    made_by_app = columns(other_database, "vehicles")
    only_0001 = tmp_copy_with(EXAMPLE_MIGRATIONS, keep={"0001_vehicles.py"})
    try:
        target = MigrationTarget(fresh_postgres_url, settings("alembic"), only_0001)
        apply_migrations(target, plan_migrations(target))
    finally:
        shutil.rmtree(only_0001.parent)
    assert columns(fresh_postgres_url, "vehicles") == made_by_app

    # The database the app made itself upgrades to the head, its rows kept.
    with psycopg.connect(other_database) as conn:
        conn.execute("INSERT INTO vehicles (make, model, year) VALUES ('Volvo', '240', 1989)")
    target = MigrationTarget(other_database, settings("alembic"), EXAMPLE_MIGRATIONS)
    assert apply_migrations(target, plan_migrations(target)).head == "0002"
    assert (
        scalar(other_database, "SELECT make || ' ' || coalesce(color, '-') FROM vehicles")
        == "Volvo -"
    )


def tmp_copy_with(folder: Path, *, keep: set[str]) -> Path:
    import tempfile

    copy = Path(tempfile.mkdtemp(prefix="rollout-migrations-")) / "migrations"
    shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("__pycache__"))
    for path in (copy / "versions").glob("*.py"):
        if path.name not in keep:
            path.unlink()
    return copy


# --- a folder of .sql files ---------------------------------------------------------------------

CREATE = "CREATE TABLE IF NOT EXISTS vehicles (id serial PRIMARY KEY, make text NOT NULL);\n"
ADD_COLOR = "-- nullable: the release before keeps working\nALTER TABLE vehicles ADD COLUMN IF NOT EXISTS color text;\n"
INDEX = "CREATE INDEX CONCURRENTLY IF NOT EXISTS vehicles_color ON vehicles (color);\n"


def test_a_sql_folder_is_planned_applied_in_order_and_recorded(
    fresh_postgres_url: str, tmp_path: Path
) -> None:
    folder = sql_folder(
        tmp_path / "sql",
        {"001_vehicles.sql": CREATE, "002_color.sql": ADD_COLOR, "010_color_index.sql": INDEX},
    )
    target = MigrationTarget(fresh_postgres_url, settings("sql"), folder)
    plan = plan_migrations(target)
    assert (plan.current, plan.head) == (None, "10")
    assert [(m.id, m.name, m.kind) for m in plan.pending] == [
        ("1", "001_vehicles.sql", Kind.EXPAND),
        ("2", "002_color.sql", Kind.EXPAND),
        ("10", "010_color_index.sql", Kind.NON_TRANSACTIONAL),
    ]
    assert plan.ok

    steps: list[MigrationStep] = []
    result = apply_migrations(target, plan, on_step=steps.append)

    assert [s.status for s in steps] == [StepStatus.APPLIED] * 3
    assert result.head == "10"
    with psycopg.connect(fresh_postgres_url) as conn:
        recorded = conn.execute(
            "SELECT id, name, kind FROM rollout_schema_migrations ORDER BY id"
        ).fetchall()
        valid = conn.execute(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'vehicles_color'::regclass"
        ).fetchone()
    assert recorded == [
        (1, "001_vehicles.sql", "expand"),
        (2, "002_color.sql", "expand"),
        (10, "010_color_index.sql", "non-transactional"),
    ]
    assert valid == (True,)
    # A file changed after it was applied fails the plan.
    (folder / "002_color.sql").write_text(ADD_COLOR + "-- edited\n")
    changed = plan_migrations(target)
    assert changed.modified == ("002_color.sql",) and not changed.ok


def test_a_contract_migration_is_refused_unless_allowed(
    fresh_postgres_url: str, tmp_path: Path
) -> None:
    folder = sql_folder(tmp_path / "sql", {"001_vehicles.sql": CREATE + ADD_COLOR})
    target = MigrationTarget(fresh_postgres_url, settings("sql"), folder)
    apply_migrations(target, plan_migrations(target))
    sql_folder(folder, {"002_drop_color.sql": "ALTER TABLE vehicles DROP COLUMN IF EXISTS color;"})

    plan = plan_migrations(target)
    assert [m.kind for m in plan.pending] == [Kind.CONTRACT]
    assert [m.id for m in plan.refused] == ["2"] and not plan.ok
    assert "ban-drop-column" in {f.rule for f in plan.errors}
    assert not plan.verdict.previous_release_compatible
    assert plan.verdict.rollback_needs_restore
    with pytest.raises(GateFailed, match="contract migration"):
        apply_migrations(target, plan)
    assert "color" in [c[0] for c in columns(fresh_postgres_url, "vehicles")]

    allowed = plan_migrations(target, allow_contract=True)
    assert allowed.refused == ()
    apply_migrations(target, allowed)
    assert "color" not in [c[0] for c in columns(fresh_postgres_url, "vehicles")]


def test_a_failed_migration_leaves_its_transaction_rolled_back(
    fresh_postgres_url: str, tmp_path: Path
) -> None:
    folder = sql_folder(
        tmp_path / "sql",
        {
            "001_vehicles.sql": CREATE,
            "002_broken.sql": ADD_COLOR + "INSERT INTO vehicles (no_such_column) VALUES (1);\n",
        },
    )
    target = MigrationTarget(fresh_postgres_url, settings("sql"), folder)
    steps: list[MigrationStep] = []

    with pytest.raises(MigrationFailed, match="no_such_column") as failed:
        apply_migrations(target, plan_migrations(target), on_step=steps.append)

    assert [(s.migration, s.status) for s in steps] == [
        ("1", StepStatus.APPLIED),
        ("2", StepStatus.FAILED),
    ]
    assert failed.value.steps == tuple(steps)
    # 001 stays applied; 002's ADD COLUMN went with its transaction, and it is not recorded.
    assert [c[0] for c in columns(fresh_postgres_url, "vehicles")] == ["id", "make"]
    assert scalar(fresh_postgres_url, "SELECT array_agg(id) FROM rollout_schema_migrations") == [1]


# --- locks --------------------------------------------------------------------------------------


def migrator_waiting(url: str) -> bool:
    """Is rollout's migration connection waiting for a lock right now?"""
    return bool(
        scalar(
            url,
            "SELECT count(*) > 0 FROM pg_stat_activity WHERE application_name = 'rollout migrate'"
            " AND wait_event_type = 'Lock'",
        )
    )


def test_a_migration_behind_a_long_transaction_times_out_instead_of_blocking_reads(
    fresh_postgres_url: str,
) -> None:
    only_0001 = tmp_copy_with(EXAMPLE_MIGRATIONS, keep={"0001_vehicles.py"})
    try:
        first = MigrationTarget(fresh_postgres_url, settings("alembic"), only_0001)
        apply_migrations(first, plan_migrations(first))
    finally:
        shutil.rmtree(only_0001.parent)
    lock_timeout = timedelta(milliseconds=500)
    target = MigrationTarget(
        fresh_postgres_url,
        settings("alembic", lock_timeout=lock_timeout, retries=2),
        EXAMPLE_MIGRATIONS,
    )
    plan = plan_migrations(target)
    assert [m.id for m in plan.pending] == ["0002"]
    steps: list[MigrationStep] = []
    outcome: list[BaseException] = []

    def migrate() -> None:
        try:
            apply_migrations(
                target, plan, on_step=steps.append, backoff=timedelta(milliseconds=200)
            )
        except BaseException as exc:
            outcome.append(exc)

    # A long open transaction that has read the table holds ACCESS SHARE until it ends.
    with (
        psycopg.connect(fresh_postgres_url) as holder,
        psycopg.connect(
            fresh_postgres_url, autocommit=True, options="-c statement_timeout=5000"
        ) as reader,
    ):
        holder.execute("SELECT count(*) FROM vehicles").fetchone()
        worker = threading.Thread(target=migrate)
        worker.start()
        read_times: list[float] = []
        reads_while_waiting = 0
        while worker.is_alive():
            waiting = migrator_waiting(fresh_postgres_url)
            started = time.perf_counter()
            reader.execute("SELECT count(*) FROM vehicles").fetchone()
            read_times.append(time.perf_counter() - started)
            reads_while_waiting += waiting
            time.sleep(0.05)
        worker.join()
        holder.rollback()

    # Every read answered; one sent while the ALTER queued waited at most until lock_timeout.
    assert reads_while_waiting >= 2
    assert max(read_times) < lock_timeout.total_seconds() + 0.5
    (error,) = outcome
    assert isinstance(error, MigrationBlocked)
    assert "gave up after 3 tries" in str(error) and "lock_timeout" in str(error)
    assert error.exit_code == 3
    assert [(s.status, s.attempt) for s in steps] == [
        (StepStatus.RETRYING, 1),
        (StepStatus.RETRYING, 2),
        (StepStatus.BLOCKED, 3),
    ]
    assert all("lock timeout" in s.detail for s in steps)
    # Nothing of 0002 applied.
    assert "color" not in [c[0] for c in columns(fresh_postgres_url, "vehicles")]
    assert scalar(fresh_postgres_url, "SELECT version_num FROM alembic_version") == "0001"


def test_an_invalid_index_left_by_a_timed_out_concurrent_build_is_dropped_before_the_retry(
    fresh_postgres_url: str, tmp_path: Path
) -> None:
    folder = sql_folder(tmp_path / "sql", {"001_vehicles.sql": CREATE + ADD_COLOR})
    base = MigrationTarget(fresh_postgres_url, settings("sql"), folder)
    apply_migrations(base, plan_migrations(base))
    sql_folder(folder, {"002_color_index.sql": INDEX})
    target = MigrationTarget(
        fresh_postgres_url, settings("sql", lock_timeout="300ms", retries=1), folder
    )
    steps: list[MigrationStep] = []

    # An open writer: CREATE INDEX CONCURRENTLY makes its (INVALID) index, then waits for it.
    with psycopg.connect(fresh_postgres_url) as writer:
        writer.execute("INSERT INTO vehicles (make) VALUES ('Saab')")
        with pytest.raises(MigrationBlocked):
            apply_migrations(target, plan_migrations(target), on_step=steps.append, backoff=FAST)
        # It could not be dropped while the writer was there; rollout says so.
        assert [s.status for s in steps] == [StepStatus.RETRYING, StepStatus.BLOCKED]
        assert "INVALID index vehicles_color not dropped yet" in steps[1].detail
        # The writer ends during the pause before the retry: the leftover goes, the build runs.
        steps.clear()
        ends = threading.Timer(0.8, writer.commit)
        ends.start()
        apply_migrations(
            target, plan_migrations(target), on_step=steps.append, backoff=timedelta(seconds=1.5)
        )
        ends.join()

    assert [s.status for s in steps] == [StepStatus.RETRYING, StepStatus.APPLIED]
    assert "dropped INVALID index vehicles_color" in steps[1].detail
    assert scalar(fresh_postgres_url, "SELECT count(*) FROM pg_index WHERE NOT indisvalid") == 0
    assert scalar(
        fresh_postgres_url,
        "SELECT indisvalid FROM pg_index WHERE indexrelid = 'vehicles_color'::regclass",
    )


def test_a_second_migrator_waits_for_the_advisory_lock_or_fails_clearly(
    fresh_postgres_url: str, tmp_path: Path
) -> None:
    folder = sql_folder(tmp_path / "sql", {"001_vehicles.sql": CREATE})
    target = MigrationTarget(fresh_postgres_url, settings("sql"), folder)
    plan = plan_migrations(target)
    with psycopg.connect(
        fresh_postgres_url, autocommit=True, application_name="other migrator"
    ) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK,))
        started = time.perf_counter()
        with pytest.raises(LockHeld, match="other migrator") as held:
            apply_migrations(target, plan, lock_wait=timedelta(milliseconds=600))
        assert 0.5 < time.perf_counter() - started < 5
        assert held.value.exit_code == 3
        assert scalar(fresh_postgres_url, "SELECT to_regclass('vehicles') IS NULL") is True

        # Released while the second one waits: it goes on.
        threading.Timer(0.5, lambda: other.execute("SELECT pg_advisory_unlock_all()")).start()
        result = apply_migrations(target, plan, lock_wait=timedelta(seconds=10))
    assert result.head == "1"


# --- the commands -------------------------------------------------------------------------------


def test_db_plan_and_migrate_commands(fresh_postgres_url: str, tmp_path: Path) -> None:
    sql_folder(tmp_path / "db", {"001_vehicles.sql": CREATE, "002_color.sql": ADD_COLOR})
    (tmp_path / "rollout.yml").write_text(
        "app: shop\n"
        "runtime: {kind: release-dir, start: 'true'}\n"
        "environments:\n"
        "  staging:\n"
        "    hosts: [{name: web-1, address: 127.0.0.1}]\n"
        f"    database: {{url: '{fresh_postgres_url}', migrations: {{kind: sql, path: db}}}}\n"
    )
    db = typer.Typer()
    register(db)
    runner = CliRunner()
    config = ["--config", str(tmp_path / "rollout.yml")]

    planned = runner.invoke(db, ["plan", "staging", *config, "--json"])
    assert planned.exit_code == 0, planned.output
    assert '"previous_release_compatible": true' in planned.output
    shown = runner.invoke(db, ["plan", "staging", *config])
    assert "002_color.sql" in shown.output and "expand" in shown.output

    migrated = runner.invoke(db, ["migrate", "staging", *config])
    assert migrated.exit_code == 0, migrated.output
    assert "2 applied" in migrated.output

    sql_folder(
        tmp_path / "db", {"003_rename.sql": "ALTER TABLE vehicles RENAME COLUMN make TO brand;"}
    )
    refused = runner.invoke(db, ["plan", "staging", *config])
    assert refused.exit_code == 1
    assert "renaming-column" in refused.output and "refused" in refused.output
    # allowing contract migrations accepts the rename's risk: the plan passes, saying so
    allowed = runner.invoke(db, ["plan", "staging", *config, "--allow-contract"])
    assert allowed.exit_code == 0, allowed.output
    assert "db restore" in " ".join(allowed.output.split())
    not_run = runner.invoke(db, ["migrate", "staging", *config])
    assert isinstance(not_run.exception, GateFailed)
    assert [c[0] for c in columns(fresh_postgres_url, "vehicles")] == ["id", "make", "color"]
