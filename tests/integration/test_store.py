"""The store against real databases: a SQLite file and a throwaway PostgreSQL cluster."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError

from rollout.changes import Change
from rollout.errors import LockHeld, StoreError
from rollout.model import CheckResult, CheckStatus, Kind, Outcome, StepStatus
from rollout.redact import Redactor
from rollout.store import OUTPUT_LIMIT, ChangeRecord, LockInfo, Store, open_store
from rollout.store.connect import HEAD_REVISION
from rollout.store.schema import metadata

SECRET = "hunter2-s3cr3t-value"
T0 = datetime(2024, 1, 15, 10, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        # A folder that does not exist yet: open_store must create it.
        return f"sqlite:///{tmp_path}/records/rollout.db"
    url: str = request.getfixturevalue("fresh_postgres_url")
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with open_store(store_url, redactor=Redactor({"DB_PASSWORD": SECRET})) as opened:
        yield opened


def _raw(store: Store, sql: str) -> list[Any]:
    with store.engine.begin() as conn:
        return list(conn.execute(text(sql)))


def _deploy(store: Store, env: str = "production", **kwargs: Any) -> int:
    fields: dict[str, Any] = dict(app="united-cars", env=env, kind=Kind.DEPLOY, tag="v1")
    return store.create_deployment(actor="alice", **{**fields, **kwargs})


# -- schema ------------------------------------------------------------------------------------


def test_migrations_create_the_tables_and_reopening_changes_nothing(
    store: Store, store_url: str
) -> None:
    tables = set(inspect(store.engine).get_table_names())
    assert set(metadata.tables) <= tables
    assert _raw(store, "SELECT version_num FROM alembic_version") == [(HEAD_REVISION,)]
    deployment_id = _deploy(store)

    with open_store(store_url) as again:
        assert _raw(again, "SELECT version_num FROM alembic_version") == [(HEAD_REVISION,)]
        assert again.deployment(deployment_id).tag == "v1"


def test_migration_matches_the_schema_the_code_queries(store: Store) -> None:
    inspector = inspect(store.engine)
    for table in metadata.tables.values():
        on_disk = {
            column["name"]: column["nullable"] for column in inspector.get_columns(table.name)
        }
        in_code = {column.name: column.nullable for column in table.columns}
        assert on_disk == in_code, table.name
        indexes = {index["name"] for index in inspector.get_indexes(table.name)}
        assert {index.name for index in table.indexes} <= indexes, table.name


# -- deployments, steps, checks ----------------------------------------------------------------


def test_deployment_lifecycle_with_steps_and_timings(store: Store) -> None:
    plus_two = timezone(timedelta(hours=2))
    deployment_id = _deploy(
        store,
        roles=["deployer", "approver"],
        commit_sha="a1b2c3d",
        committed_at=datetime(2024, 1, 15, 9, 0, tzinfo=plus_two),
        started_at=T0,
    )
    step_id = store.start_step(
        deployment_id, phase="deploy", name="activate", host="web-1", started_at=T0
    )
    store.finish_step(
        step_id, status=StepStatus.SUCCEEDED, finished_at=T0 + timedelta(seconds=42), output="ok"
    )
    store.set_previous_tag(deployment_id, "v0")
    store.finish_deployment(
        deployment_id, status=Outcome.SUCCEEDED, finished_at=T0 + timedelta(minutes=5)
    )

    record = store.deployment(deployment_id)
    assert record.status is Outcome.SUCCEEDED
    assert record.kind is Kind.DEPLOY
    assert record.roles == ("deployer", "approver")
    assert record.previous_tag == "v0"
    assert record.duration == timedelta(minutes=5)
    assert record.committed_at == datetime(2024, 1, 15, 7, 0, tzinfo=UTC)
    for moment in (record.started_at, record.finished_at, record.committed_at):
        assert moment is not None and moment.utcoffset() == timedelta(0)
    [step] = store.steps(deployment_id)
    assert (step.phase, step.name, step.host, step.status) == (
        "deploy",
        "activate",
        "web-1",
        StepStatus.SUCCEEDED,
    )
    assert step.duration == timedelta(seconds=42)
    assert step.started_at.tzinfo is not None


def test_a_running_deployment_has_no_duration_yet(store: Store) -> None:
    record = store.deployment(_deploy(store))
    assert record.status is Outcome.RUNNING
    assert record.duration is None
    assert record.started_at.utcoffset() == timedelta(0)


def test_failed_deployment_keeps_where_it_failed(store: Store) -> None:
    first = _deploy(store)
    rollback = _deploy(
        store, kind=Kind.ROLLBACK, tag="v0", rollback_of=first, reason="p95 too high"
    )
    store.finish_deployment(
        first, status=Outcome.ROLLED_BACK, failed_host="web-2", failed_step="health"
    )

    record = store.deployment(first)
    assert (record.failed_host, record.failed_step) == ("web-2", "health")
    assert store.deployment(rollback).rollback_of == first
    assert store.deployment(rollback).reason == "p95 too high"


def test_deployments_filter_and_come_newest_first(store: Store) -> None:
    old = _deploy(store, started_at=T0)
    new = _deploy(store, started_at=T0 + timedelta(hours=2))
    middle = _deploy(store, started_at=T0 + timedelta(hours=1), kind=Kind.ROLLBACK)
    staging = _deploy(store, env="staging", started_at=T0 + timedelta(hours=3))
    other_app = _deploy(store, app="billing", started_at=T0 + timedelta(hours=4))

    assert [d.id for d in store.deployments()] == [other_app, staging, new, middle, old]
    assert [d.id for d in store.deployments(env="production", app="united-cars")] == [
        new,
        middle,
        old,
    ]
    assert [d.id for d in store.deployments(kind=Kind.ROLLBACK)] == [middle]
    assert [d.id for d in store.deployments(since=T0 + timedelta(minutes=30), limit=2)] == [
        other_app,
        staging,
    ]
    store.finish_deployment(old, status=Outcome.SUCCEEDED)
    store.finish_deployment(new, status=Outcome.FAILED)
    assert [d.id for d in store.deployments(env="production", status=Outcome.SUCCEEDED)] == [old]


def test_a_deployments_changes_are_recorded_once_each_in_order(store: Store) -> None:
    deployment_id = _deploy(store, commit_sha="c3", started_at=T0)
    plus_two = timezone(timedelta(hours=2))
    shipped = [
        Change("c1", datetime(2024, 1, 15, 9, 0, tzinfo=plus_two), None),
        Change("c2", T0 - timedelta(hours=1), T0 - timedelta(minutes=30)),
        Change("c1", T0, T0),  # the same commit again: the first stands
    ]
    assert store.add_changes(deployment_id, "production", shipped) == 2
    assert store.add_changes(deployment_id, "production", [shipped[1], Change("c3", T0, T0)]) == 1
    assert store.changes(deployment_id) == [
        ChangeRecord(1, deployment_id, "production", "c1", T0 - timedelta(hours=3), None),
        ChangeRecord(
            2, deployment_id, "production", "c2", shipped[1].committed_at, shipped[1].merged_at
        ),
        ChangeRecord(3, deployment_id, "production", "c3", T0, T0),
    ]
    assert store.changes(_deploy(store)) == []


def test_changes_must_name_their_deployments_environment(store: Store) -> None:
    deployment_id = _deploy(store, env="staging")
    with pytest.raises(StoreError, match="is of staging, not of production"):
        store.add_changes(deployment_id, "production", [Change("c1", T0, None)])
    with pytest.raises(StoreError, match="no deployment with id 999"):
        store.add_changes(999, "production", [Change("c1", T0, None)])
    assert store.changes(deployment_id) == []


def test_the_last_commit_is_the_newest_deploy_that_reached_the_hosts(store: Store) -> None:
    assert store.last_commit("production") is None

    def finished(sha: str | None, status: Outcome, minutes: int, **kwargs: Any) -> int:
        ident = _deploy(store, commit_sha=sha, started_at=T0, **kwargs)
        at = T0 + timedelta(minutes=minutes)
        store.finish_deployment(ident, status=status, finished_at=at)
        return ident

    finished("a", Outcome.SUCCEEDED, 10)
    assert store.last_commit("production") == "a"
    finished("b", Outcome.ROLLED_BACK, 20)  # it reached the hosts, then went back
    finished("c", Outcome.FAILED, 30)  # it never did
    finished("d", Outcome.SUCCEEDED, 40, env="staging")
    finished(None, Outcome.SUCCEEDED, 50, kind=Kind.ROLLBACK, tag="v0")  # not a deploy
    _deploy(store, commit_sha="e", started_at=T0 + timedelta(hours=1))  # still running
    assert store.last_commit("production") == "b"
    finished(None, Outcome.SUCCEEDED, 60)  # shipped with no commit recorded: unknown
    assert store.last_commit("production") is None
    assert store.last_commit("staging") == "d"


def test_unknown_ids_raise_store_error(store: Store) -> None:
    with pytest.raises(StoreError, match="no deployment with id 999"):
        store.deployment(999)
    with pytest.raises(StoreError, match="no steps row with id 999"):
        store.finish_step(999, status=StepStatus.FAILED)
    with pytest.raises(StoreError):  # the foreign key is enforced (SQLite: PRAGMA on connect)
        store.start_step(999, phase="deploy", name="install", host=None)


def test_naive_datetimes_are_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="naive datetime"):
        _deploy(store, started_at=datetime(2024, 1, 15, 10, 0))


def test_step_output_keeps_the_tail(store: Store) -> None:
    deployment_id = _deploy(store)
    step_id = store.start_step(deployment_id, phase="deploy", name="migrate", host="web-1")
    output = "noise\n" * 2000 + "ERROR: relation vehicles does not exist"
    store.finish_step(step_id, status=StepStatus.FAILED, output=output)

    [step] = store.steps(deployment_id)
    assert len(step.output) == OUTPUT_LIMIT
    assert step.output.endswith("ERROR: relation vehicles does not exist")
    assert step.status is StepStatus.FAILED


def test_check_results_round_trip(store: Store) -> None:
    deployment_id = _deploy(store)
    result = CheckResult(
        id="tls.expiry",
        status=CheckStatus.FAIL,
        value="3 days",
        threshold=">= 14 days",
        evidence="notAfter=2024-01-18",
        remedy="renew the certificate",
        host="web-1",
    )
    store.record_check(
        result, env="production", phase="preflight", deployment_id=deployment_id, recorded_at=T0
    )
    store.record_check(
        CheckResult(id="disk", status=CheckStatus.PASS), env="production", phase="preflight"
    )

    [check] = store.checks(deployment_id)
    assert (check.check_id, check.status, check.value, check.threshold) == (
        "tls.expiry",
        CheckStatus.FAIL,
        "3 days",
        ">= 14 days",
    )
    assert (check.evidence, check.remedy, check.host, check.phase) == (
        "notAfter=2024-01-18",
        "renew the certificate",
        "web-1",
        "preflight",
    )
    assert check.recorded_at == T0


def test_approvals_are_listed_per_env_and_tag(store: Store) -> None:
    store.add_approval(env="production", tag="v1", person="bob", role="qa", approved_at=T0)
    store.add_approval(
        env="production",
        tag="v1",
        person="carol",
        role="security",
        note="scan clean",
        kind="security-review",
    )
    store.add_approval(env="production", tag="v2", person="bob", role="qa")

    approvals = store.approvals("production", "v1")
    assert [(a.person, a.role, a.kind) for a in approvals] == [
        ("bob", "qa", "sign-off"),
        ("carol", "security", "security-review"),
    ]
    assert approvals[1].note == "scan clean"


# -- locks -------------------------------------------------------------------------------------


def _take(store: Store, holder: str = "alice") -> LockInfo:
    return store.acquire_lock(
        "production",
        holder=holder,
        machine="laptop-1",
        pid=4242,
        tag="v1",
        message="weekly release",
    )


def test_lock_acquire_conflict_release_and_force(store: Store) -> None:
    mine = _take(store)
    assert store.lock("production") == mine
    assert len(mine.token) >= 32

    with pytest.raises(LockHeld) as held:
        _take(store, holder="bob")
    message = str(held.value)
    for part in (
        "alice",
        "laptop-1",
        "4242",
        "v1",
        "weekly release",
        mine.acquired_at.strftime("%Y-%m-%d %H:%M"),
    ):
        assert part in message
    assert (
        "rollout lock status production" in message and "rollout lock release production" in message
    )

    assert store.release_lock("production", "not-the-token") is False
    assert store.lock("production") == mine
    assert store.release_lock("production", mine.token) is True
    assert store.lock("production") is None

    again = _take(store, holder="bob")
    assert store.lock("staging") is None  # one lock per environment
    assert store.force_release_lock("production") == again
    assert store.force_release_lock("production") is None


def _race(store_url: str, count: int, work: Callable[[Store, int], Any]) -> list[Any]:
    """Run ``work`` in ``count`` threads at once, each through its own Store (own engine)."""
    stores = [open_store(store_url) for _ in range(count)]
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = work(stores[index], index)
        except Exception as exc:
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for opened in stores:
        opened.close()
    return results


def test_concurrent_acquisition_has_exactly_one_winner(store: Store, store_url: str) -> None:
    results = _race(store_url, 8, lambda s, i: _take(s, holder=f"runner-{i}"))

    winners = [r for r in results if isinstance(r, LockInfo)]
    assert len(winners) == 1, results
    assert all(isinstance(r, LockHeld) for r in results if r is not winners[0]), results
    assert store.lock("production") == winners[0]


# -- audit -------------------------------------------------------------------------------------


def _append(store: Store, count: int) -> None:
    for n in range(count):
        store.append_audit(
            actor="alice",
            action="deploy",
            subject=f"production/v{n}",
            details={"n": n, "hosts": ("web-1",)},
        )


def _drop_audit_triggers(store: Store) -> None:
    """What an attacker with direct database access would do first."""
    if store.engine.dialect.name == "sqlite":
        statements = ["DROP TRIGGER audit_no_update", "DROP TRIGGER audit_no_delete"]
    else:
        statements = ["DROP TRIGGER audit_no_change ON audit"]
    with store.engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))


def test_audit_chain_verifies(store: Store) -> None:
    assert store.verify_audit().ok and store.verify_audit().rows == 0
    first = store.append_audit(actor="alice", action="lock", subject="production")
    _append(store, 3)

    report = store.verify_audit()
    assert (report.ok, report.rows, report.problems) == (True, 4, [])
    assert first.prev_hash == "0" * 64
    assert report.head == _raw(store, "SELECT hash FROM audit WHERE id = 4")[0][0]


def test_concurrent_appends_keep_one_chain(store: Store, store_url: str) -> None:
    results = _race(
        store_url,
        6,
        lambda s, i: [
            s.append_audit(actor=f"runner-{i}", action="x", subject=str(n)) for n in range(5)
        ],
    )

    assert not [r for r in results if isinstance(r, Exception)], results
    report = store.verify_audit()
    assert (report.ok, report.rows) == (True, 30), report.problems


def test_the_database_refuses_to_change_audit_rows(store: Store) -> None:
    _append(store, 2)
    for statement in (
        "UPDATE audit SET actor = 'mallory' WHERE id = 1",
        "DELETE FROM audit WHERE id = 1",
    ):
        with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
            conn.execute(text(statement))
    assert store.verify_audit().ok


def test_an_edited_row_is_reported_with_its_id(store: Store) -> None:
    _append(store, 4)
    _drop_audit_triggers(store)
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE audit SET subject = 'staging/v9' WHERE id = 2"))

    report = store.verify_audit()
    assert not report.ok
    assert report.problems == ["row 2: hash does not match its content (edited)"]


def test_a_deleted_middle_row_is_reported(store: Store) -> None:
    _append(store, 4)
    _drop_audit_triggers(store)
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit WHERE id = 2"))

    report = store.verify_audit()
    assert not report.ok and report.rows == 3
    assert all(problem.startswith("row 3:") for problem in report.problems)
    assert any("expected id 2" in problem for problem in report.problems)


def test_a_relinked_chain_is_reported(store: Store) -> None:
    _append(store, 4)
    _drop_audit_triggers(store)
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit WHERE id = 2"))
        conn.execute(
            text("UPDATE audit SET prev_hash = (SELECT hash FROM audit WHERE id = 1) WHERE id = 3")
        )

    # The link now fits, but the link is part of the hash, and the id still shows the gap.
    report = store.verify_audit()
    assert report.problems == [
        "row 3: expected id 2; rows before it are missing",
        "row 3: hash does not match its content (edited)",
    ]


def test_cutting_the_newest_rows_changes_the_head(store: Store) -> None:
    # The chain cannot see a cut at its end by itself; the head, recorded elsewhere, can.
    _append(store, 3)
    anchored = store.verify_audit().head
    _drop_audit_triggers(store)
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit WHERE id = 3"))

    report = store.verify_audit()
    assert report.ok and report.head != anchored


# -- redaction and errors ----------------------------------------------------------------------


def test_secrets_never_reach_the_database(store: Store) -> None:
    deployment_id = _deploy(store, reason=f"retry with {SECRET}")
    step_id = store.start_step(deployment_id, phase="backup", name="pg_dump", host="web-1")
    store.finish_step(
        step_id, status=StepStatus.FAILED, output=f"pg_dump: password {SECRET} rejected"
    )
    store.finish_deployment(deployment_id, status=Outcome.FAILED, reason=f"backup failed: {SECRET}")
    store.record_check(
        CheckResult(id="db", status=CheckStatus.FAIL, evidence=f"dsn=postgres://u:{SECRET}@db"),
        env="production",
        phase="preflight",
    )
    store.add_approval(env="production", tag="v1", person="bob", role="qa", note=SECRET)
    store.acquire_lock("production", holder="alice", machine="m", pid=1, tag="v1", message=SECRET)
    store.append_audit(
        actor="alice",
        action="deploy",
        subject="production",
        details={"env": {"DB_PASSWORD": SECRET}, "argv": ["--password", SECRET]},
    )

    dump = repr([_raw(store, f"SELECT * FROM {table}") for table in metadata.tables])
    assert SECRET not in dump
    assert "[secret:DB_PASSWORD]" in dump
    assert store.steps(deployment_id)[0].output == "pg_dump: password [secret:DB_PASSWORD] rejected"
    assert store.verify_audit().ok


def test_errors_never_show_the_password() -> None:
    # Port 1 on localhost refuses at once: the connection error must not echo the password.
    with pytest.raises(StoreError) as raised:
        open_store("postgresql://rollout:topsecretpw@127.0.0.1:1/records")
    assert "topsecretpw" not in str(raised.value)
    assert "127.0.0.1" in str(raised.value)


def test_unsupported_urls_are_refused() -> None:
    with pytest.raises(StoreError, match="not supported"):
        open_store("mysql://root@localhost/records")


def test_the_fast_path_revision_is_alembics_head() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from rollout.store.connect import HEAD_REVISION, MIGRATIONS

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD_REVISION
