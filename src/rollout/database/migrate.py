"""The app's schema migrations: plan them (pending, lint, kind, rollback verdict), apply them.

Two kinds of migration folder (``database.migrations`` in rollout.yml):

    alembic  a folder with alembic.ini; the applied revision is in ``alembic_version``. The plan
             lints each pending revision's SQL rendered offline (as ``alembic upgrade --sql``);
             apply runs Alembic online on a connection rollout opened and configured, passed to
             env.py in ``config.attributes["connection"]``.
    sql      files ``NNN_name.sql`` applied in number order; the applied ones are recorded in
             ``rollout_schema_migrations`` in the app's database, with each file's SHA-256.

``apply_migrations`` works as db-safety.md §3.2 says: a session-level ``pg_advisory_lock`` so
one migrator runs at a time; ``lock_timeout`` and ``statement_timeout`` on its session; one
transaction per migration (statements that cannot run in one, run outside); a lock timeout
(SQLSTATE 55P03) is retried with backoff, after dropping any INVALID index the failed try left;
every try is reported through ``on_step``; afterwards the database's head must equal the plan's.
"""

from __future__ import annotations

import hashlib
import io
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rollout.database.lint import Finding, Kind, Lint, lint_sql, lint_statements
from rollout.errors import BadInput, GateFailed, InfrastructureError, LockHeld

if TYPE_CHECKING:
    import psycopg

    from rollout.config import MigrationsConfig, Runbook

# Any fixed number ("rollmigr"): every rollout migrator of one database takes this lock.
ADVISORY_LOCK = 0x726F6C6C6D696772
SQL_TABLE = "rollout_schema_migrations"
_SQL_FILE = re.compile(r"^(?P<number>\d+)_(?P<name>[A-Za-z0-9][\w.-]*)\.sql$")
_LOCK_NOT_AVAILABLE = "55P03"
_MAX_BACKOFF_S = 30.0
_APPLICATION = "rollout migrate"  # in pg_stat_activity


class MigrationFailed(GateFailed):
    """A migration's SQL failed; its transaction was rolled back, earlier ones stay applied."""

    def __init__(self, message: str, steps: Sequence[MigrationStep], *, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.steps = tuple(steps)


class MigrationBlocked(InfrastructureError):
    """A migration kept waiting for a lock past lock_timeout, every retry; nothing of it ran."""

    def __init__(self, message: str, steps: Sequence[MigrationStep], *, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.steps = tuple(steps)


# --- values -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MigrationTarget:
    """Where an environment's migrations are and the database they apply to."""

    url: str
    settings: MigrationsConfig
    folder: Path

    @classmethod
    def of(cls, runbook: Runbook, env: str) -> MigrationTarget:
        """The target of ``env``; BadInput when it has no database or no migrations."""
        database = runbook.environment(env).database
        if database is None or database.migrations is None:
            raise BadInput(
                f"environment {env!r} has no database.migrations in {runbook.source.name}",
                hint="add `migrations: {kind: alembic, path: migrations}` under its database",
            )
        folder = runbook.config_dir / database.migrations.path
        return cls(database.url, database.migrations, folder)


@dataclass(frozen=True)
class Migration:
    """One pending migration: its id, what it is called, its SQL and what the lint said."""

    id: str  # Alembic revision, or the number of a .sql file ("2" for 002_x.sql)
    name: str
    sql: str
    lint: Lint

    @property
    def kind(self) -> Kind:
        return self.lint.kind


@dataclass(frozen=True)
class Verdict:
    """Can the previous release run on the new schema, and what rolling back would take."""

    previous_release_compatible: bool
    rollback_needs_restore: bool
    summary: str


@dataclass(frozen=True)
class MigrationPlan:
    kind: Literal["alembic", "sql"]
    current: str | None  # the database's head now (None: nothing applied)
    head: str | None  # the head once every pending migration is applied
    pending: tuple[Migration, ...]
    verdict: Verdict
    allow_contract: bool
    modified: tuple[str, ...] = ()  # applied .sql files whose content changed since

    @property
    def errors(self) -> tuple[Finding, ...]:
        """Lint errors; with contract migrations allowed, the ones that only say "contract"
        (drop, rename, type change) are the allowed risk, not errors."""
        found = []
        for m in self.pending:
            contract = {st.sql for st in m.lint.statements if st.kind is Kind.CONTRACT}
            found += [
                f for f in m.lint.errors if not (self.allow_contract and f.statement in contract)
            ]
        return tuple(found)

    @property
    def refused(self) -> tuple[Migration, ...]:
        """Contract migrations, when contract migrations are not allowed."""
        if self.allow_contract:
            return ()
        return tuple(m for m in self.pending if m.kind is Kind.CONTRACT)

    @property
    def ok(self) -> bool:
        """No lint error, no refused migration, no applied file changed: the gate passes."""
        return not (self.errors or self.refused or self.modified)


class StepStatus(StrEnum):
    APPLIED = "applied"
    RETRYING = "retrying"  # a lock timeout; tried again after a pause
    BLOCKED = "blocked"  # a lock timeout on the last try
    FAILED = "failed"


@dataclass(frozen=True)
class MigrationStep:
    """One try of one migration, as reported to ``on_step``."""

    migration: str
    name: str
    kind: Kind
    status: StepStatus
    attempt: int  # 1 for the first try
    started_at: datetime
    finished_at: datetime
    detail: str = ""


@dataclass(frozen=True)
class MigrationResult:
    before: str | None
    head: str | None
    applied: tuple[str, ...]
    steps: tuple[MigrationStep, ...]


def verdict(pending: Sequence[Migration]) -> Verdict:
    """The rollback verdict of db-safety.md §3.3, said before anything runs."""
    contract = [m.id for m in pending if m.kind is Kind.CONTRACT]
    data = [m.id for m in pending if m.kind is Kind.DATA]
    if contract:
        return Verdict(
            False,
            True,
            f"contract migration(s) {', '.join(contract)}: the previous release may fail on the "
            "new schema; rolling back means `rollout db restore` (losing writes since the "
            "backup) or a forward fix",
        )
    if not pending:
        return Verdict(True, False, "no pending migration")
    note = (
        f"; data migration(s) {', '.join(data)} change rows that a code rollback keeps"
        if data
        else ""
    )
    return Verdict(
        True,
        False,
        "every pending migration is additive: the previous release runs on the new schema, "
        f"a code rollback needs no restore{note}",
    )


# --- plan ---------------------------------------------------------------------------------------


def plan_migrations(
    target: MigrationTarget, *, allow_contract: bool | None = None
) -> MigrationPlan:
    """Read what is pending on the target's database, lint it and judge it; changes nothing.

    ``allow_contract`` None takes the runbook's ``allow_contract``.
    """
    allow = target.settings.allow_contract if allow_contract is None else allow_contract
    if target.settings.kind == "alembic":
        current, head, pending, modified = _plan_alembic(target)
    else:
        current, head, pending, modified = _plan_sql(target)
    return MigrationPlan(
        target.settings.kind, current, head, pending, verdict(pending), allow, modified
    )


_Read = tuple[str | None, str | None, tuple[Migration, ...], tuple[str, ...]]


def _plan_sql(target: MigrationTarget) -> _Read:
    files = sql_files(target.folder)
    with _connect(target.url) as conn:
        applied = _applied_sql(conn)
    modified = tuple(
        f.name for f in files if f.number in applied and applied[f.number] != f.checksum
    )
    pending = tuple(
        Migration(f.number, f.name, f.sql, lint_sql(f.sql))
        for f in files
        if f.number not in applied
    )
    current = max(applied, key=int, default=None)
    head = files[-1].number if files else None
    return current, head, pending, modified


@dataclass(frozen=True)
class SqlFile:
    number: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def sql_files(folder: Path) -> list[SqlFile]:
    """The folder's ``NNN_name.sql`` files in number order; BadInput for a misnamed one."""
    if not folder.is_dir():
        raise BadInput(f"migrations folder {folder} does not exist")
    files: dict[int, SqlFile] = {}
    for path in sorted(folder.glob("*.sql")):
        match = _SQL_FILE.match(path.name)
        if match is None:
            raise BadInput(
                f"{path}: not a migration name",
                hint="name files NNN_what.sql, e.g. 003_add_color.sql",
            )
        number = int(match["number"])
        if number in files:
            raise BadInput(f"{path}: number {number} is taken by {files[number].name}")
        files[number] = SqlFile(str(number), path.name, path.read_text(encoding="utf-8"))
    return [files[n] for n in sorted(files)]


def _applied_sql(conn: psycopg.Connection[Any]) -> dict[str, str]:
    """Applied .sql migrations: number -> checksum (empty when the table is not there yet)."""
    if not _table_exists(conn, SQL_TABLE):
        return {}
    rows = conn.execute(f"SELECT id, checksum FROM {SQL_TABLE}").fetchall()
    return {str(number): str(checksum) for number, checksum in rows}


def _table_exists(conn: psycopg.Connection[Any], name: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
    return bool(row and row[0])


def _plan_alembic(target: MigrationTarget) -> _Read:
    script = _alembic_scripts(target)
    with _connect(target.url) as conn:
        current = _alembic_current(conn)
    head = _alembic_head(script)
    revisions = _alembic_pending(script, current, head)
    pending: list[Migration] = []
    start = current
    for revision in revisions:
        sql = _render_offline(
            target, f"{start}:{revision.revision}" if start else revision.revision
        )
        pending.append(Migration(revision.revision, revision.doc or "", sql, _lint_rendered(sql)))
        start = revision.revision
    return current, head, tuple(pending), ()


def _lint_rendered(sql: str) -> Lint:
    """Lint Alembic's offline SQL without its own bookkeeping (transactions, alembic_version)."""
    from rollout.database.lint import split_sql

    kept = [
        s
        for s in split_sql(sql)
        if "alembic_version" not in s.lower()
        and s.strip().upper() not in ("BEGIN", "COMMIT", "BEGIN TRANSACTION")
    ]
    return lint_statements(kept)


def _alembic_config(target: MigrationTarget, output: io.StringIO | None = None) -> Any:
    from alembic.config import Config

    ini = target.folder / "alembic.ini"
    if not ini.is_file():
        raise BadInput(f"{ini} not found", hint="migrations.path names the folder of alembic.ini")
    config = Config(str(ini), output_buffer=output)
    config.set_main_option("sqlalchemy.url", _sqlalchemy_url(target.url).replace("%", "%%"))
    return config


def _alembic_scripts(target: MigrationTarget) -> Any:
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    try:
        return ScriptDirectory.from_config(_alembic_config(target))
    except CommandError as exc:
        raise BadInput(f"{target.folder}: {exc}") from exc


def _alembic_head(script: Any) -> str | None:
    from alembic.util import CommandError

    try:
        head: str | None = script.get_current_head()
    except CommandError as exc:
        raise BadInput(f"{exc}", hint="merge the heads (`alembic merge heads`)") from exc
    return head


def _alembic_pending(script: Any, current: str | None, head: str | None) -> list[Any]:
    from alembic.util import CommandError

    if head is None or current == head:
        return []
    try:
        revisions = list(script.iterate_revisions(head, current or "base"))
    except CommandError as exc:
        raise BadInput(
            f"the database is at revision {current}, which the migrations folder does not know",
            hint="is the folder from an older release, or the database from another app?",
        ) from exc
    return list(reversed(revisions))


def _alembic_current(conn: psycopg.Connection[Any]) -> str | None:
    if not _table_exists(conn, "alembic_version"):
        return None
    rows = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    if len(rows) > 1:
        raise BadInput(f"the database has several Alembic heads: {', '.join(r[0] for r in rows)}")
    return str(rows[0][0]) if rows else None


def _render_offline(target: MigrationTarget, revisions: str) -> str:
    from alembic import command
    from alembic.util import CommandError

    output = io.StringIO()
    try:
        command.upgrade(_alembic_config(target, output), revisions, sql=True)
    except CommandError as exc:
        raise BadInput(f"cannot render migration {revisions} as SQL: {exc}") from exc
    return output.getvalue()


# --- apply --------------------------------------------------------------------------------------

StepCallback = Callable[[MigrationStep], None]


def apply_migrations(
    target: MigrationTarget,
    plan: MigrationPlan,
    *,
    allow_contract: bool | None = None,
    on_step: StepCallback | None = None,
    backoff: timedelta = timedelta(seconds=1),
    lock_wait: timedelta = timedelta(minutes=1),
) -> MigrationResult:
    """Apply the plan's pending migrations, one transaction each; see the module docstring.

    Raises GateFailed (contract refused, database moved on since the plan, head differs after),
    MigrationFailed (a migration's SQL failed), MigrationBlocked (lock timeouts past the
    retries), LockHeld (another migrator held the advisory lock for ``lock_wait``).
    """
    allow = plan.allow_contract if allow_contract is None else allow_contract
    refused = [m.id for m in plan.pending if m.kind is Kind.CONTRACT]
    if refused and not allow:
        raise GateFailed(
            f"contract migration(s) {', '.join(refused)} refused: the previous release may "
            "break on the new schema and rolling back would need a restore",
            hint="ship them in a later release, or pass --allow-contract "
            "(migrations.allow_contract)",
        )
    runner = _Runner(target, on_step or (lambda _step: None), backoff)
    with _advisory_lock(target.url, lock_wait) as control:
        runner.control = control
        _set_timeouts(control, target.settings)
        if target.settings.kind == "sql":
            _ensure_sql_table(control)
        before = _current(target, control)
        if before != plan.current:
            raise GateFailed(
                f"the database moved from {plan.current} to {before} since the plan",
                hint="plan again",
            )
        for migration in plan.pending:
            runner.apply(migration)
        head = _current(target, control)
    if head != plan.head:
        raise GateFailed(f"after migrating, the database is at {head}, the plan said {plan.head}")
    return MigrationResult(before, head, tuple(m.id for m in plan.pending), tuple(runner.steps))


def _current(target: MigrationTarget, conn: psycopg.Connection[Any]) -> str | None:
    if target.settings.kind == "alembic":
        return _alembic_current(conn)
    return max(_applied_sql(conn), key=int, default=None)


class _Runner:
    """Applies migrations one by one with retries; collects the steps."""

    def __init__(self, target: MigrationTarget, on_step: StepCallback, backoff: timedelta):
        self.target = target
        self.on_step = on_step
        self.backoff = backoff.total_seconds()
        self.steps: list[MigrationStep] = []
        self.control: psycopg.Connection[Any] | None = None

    def apply(self, migration: Migration) -> None:
        retries = self.target.settings.retries
        done = 0  # .sql: segments already committed, not run again on a retry
        for attempt in range(1, retries + 2):
            started = datetime.now(UTC)
            # A timed-out CREATE INDEX CONCURRENTLY leaves an INVALID index, which the retry's
            # IF NOT EXISTS would take for done: dropped first (after the pause, when the
            # blocker may be gone); if it cannot be dropped yet, this try counts as timed out.
            cleanup = self._drop_invalid(migration)
            try:
                if "not dropped" in cleanup:
                    raise _LockTimeout(cleanup.removeprefix("; "))
                if self.target.settings.kind == "alembic":
                    self._apply_alembic(migration)
                else:
                    done = self._apply_sql(migration, done)
            except _LockTimeout as exc:
                if attempt > retries:
                    detail = f"{exc}{cleanup}{self._drop_invalid(migration)}"
                    self._record(migration, StepStatus.BLOCKED, attempt, started, detail)
                    raise self._blocked(migration, attempt) from exc
                self._record(migration, StepStatus.RETRYING, attempt, started, f"{exc}{cleanup}")
                time.sleep(min(self.backoff * 2 ** (attempt - 1), _MAX_BACKOFF_S))
                continue
            except _StatementFailed as exc:
                self._record(migration, StepStatus.FAILED, attempt, started, str(exc))
                raise MigrationFailed(
                    f"migration {migration.id} ({migration.name}) failed: {exc}",
                    self.steps,
                    hint="its transaction was rolled back; fix it and migrate again",
                ) from exc
            self._record(
                migration, StepStatus.APPLIED, attempt, started, cleanup.removeprefix("; ")
            )
            return

    def _blocked(self, migration: Migration, attempt: int) -> MigrationBlocked:
        timeout = self.target.settings.lock_timeout.total_seconds()
        return MigrationBlocked(
            f"migration {migration.id} ({migration.name}) gave up after {attempt} tries: each "
            f"waited longer than lock_timeout ({timeout:g} s) for a lock",
            self.steps,
            hint="a long transaction holds a lock on the table (see pg_stat_activity); the "
            "migration's transaction was rolled back, nothing of it applied",
        )

    def _record(
        self,
        migration: Migration,
        status: StepStatus,
        attempt: int,
        started: datetime,
        detail: str = "",
    ) -> None:
        step = MigrationStep(
            migration.id,
            migration.name,
            migration.kind,
            status,
            attempt,
            started,
            datetime.now(UTC),
            detail,
        )
        self.steps.append(step)
        self.on_step(step)

    # INVALID indexes: what a CREATE INDEX CONCURRENTLY leaves when it fails (strong_migrations'
    # remove_invalid_indexes). The migration's own are those its SQL names.
    def _invalid_indexes(self, migration: Migration) -> list[str]:
        assert self.control is not None
        rows = self.control.execute(
            "SELECT indexrelid::regclass::text, c.relname FROM pg_index i"
            " JOIN pg_class c ON c.oid = i.indexrelid WHERE NOT i.indisvalid"
        ).fetchall()
        text = migration.sql.lower()
        return sorted(
            str(qualified)
            for qualified, name in rows
            if re.search(rf"(?<![\w$]){re.escape(str(name).lower())}(?![\w$])", text)
        )

    def _drop_invalid(self, migration: Migration) -> str:
        """Drop the migration's INVALID indexes; what happened, for the step's detail."""
        from psycopg import sql

        assert self.control is not None
        said = ""
        for index in self._invalid_indexes(migration):
            # The name came back from regclass::text, quoted where needed: SQL, not a literal.
            drop = sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.SQL(index))
            try:
                # It waits for the same transactions the build waited for: bounded the same way.
                with _translated():
                    self.control.execute(drop)
                said += f"; dropped INVALID index {index}"
            except (_LockTimeout, _StatementFailed) as exc:
                said += f"; INVALID index {index} not dropped yet ({exc})"
        return said

    def _apply_sql(self, migration: Migration, done: int) -> int:
        segments = _segments(migration)
        with _connect(self.target.url) as conn:
            _set_timeouts(conn, self.target.settings)
            for index, (transactional, statements) in enumerate(segments):
                if index < done:
                    continue
                last = index == len(segments) - 1
                if transactional:
                    with _translated(), conn.transaction():
                        for statement in statements:
                            _execute(conn, statement)
                        if last:
                            _record_sql(conn, migration)
                else:
                    with _translated():
                        _execute(conn, statements[0])
                        if last:
                            _record_sql(conn, migration)
                done = index + 1
        return done

    def _apply_alembic(self, migration: Migration) -> None:
        from alembic import command
        from alembic.util import CommandError
        from sqlalchemy import create_engine, text
        from sqlalchemy.pool import NullPool

        config = _alembic_config(self.target)
        engine = create_engine(
            _sqlalchemy_url(self.target.url),
            poolclass=NullPool,
            connect_args={"application_name": _APPLICATION, "connect_timeout": 10},
        )
        try:
            with _translated(), engine.connect() as connection:
                settings = self.target.settings
                connection.execute(text(f"SET lock_timeout = {_ms(settings.lock_timeout)}"))
                connection.execute(
                    text(f"SET statement_timeout = {_ms(settings.statement_timeout)}")
                )
                connection.commit()
                config.attributes["connection"] = connection
                try:
                    command.upgrade(config, migration.id)
                except CommandError as exc:
                    raise _StatementFailed(str(exc)) from exc
        finally:
            engine.dispose()


def _segments(migration: Migration) -> list[tuple[bool, list[str]]]:
    """Consecutive transactional statements together; each non-transactional one alone."""
    segments: list[tuple[bool, list[str]]] = []
    for statement in migration.lint.statements:
        if statement.transactional and segments and segments[-1][0]:
            segments[-1][1].append(statement.sql)
        else:
            segments.append((statement.transactional, [statement.sql]))
    return segments or [(True, [])]


def _record_sql(conn: psycopg.Connection[Any], migration: Migration) -> None:
    checksum = hashlib.sha256(migration.sql.encode()).hexdigest()
    conn.execute(
        f"INSERT INTO {SQL_TABLE} (id, name, checksum, kind) VALUES (%s, %s, %s, %s)",
        (int(migration.id), migration.name, checksum, migration.kind.value),
    )


def _ensure_sql_table(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {SQL_TABLE} ("
        " id bigint PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
        " kind text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
    )


def _execute(conn: psycopg.Connection[Any], statement: str) -> None:
    conn.execute(statement.encode())


def _ms(value: timedelta) -> int:
    return max(1, int(value.total_seconds() * 1000))


def _set_timeouts(conn: psycopg.Connection[Any], settings: MigrationsConfig) -> None:
    conn.execute(f"SET lock_timeout = {_ms(settings.lock_timeout)}")
    conn.execute(f"SET statement_timeout = {_ms(settings.statement_timeout)}")


class _LockTimeout(Exception):
    """A statement gave up waiting for a lock (55P03): the try is rolled back and retried."""


class _StatementFailed(Exception):
    """A statement failed for any other reason: the migration stops."""


@contextmanager
def _translated() -> Iterator[None]:
    """Map psycopg's and SQLAlchemy's errors to a lock timeout, or a failed statement."""
    import psycopg
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except (psycopg.Error, SQLAlchemyError) as exc:
        cause = getattr(exc, "orig", None) or exc
        sqlstate = getattr(cause, "sqlstate", None)
        message = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        if sqlstate == _LOCK_NOT_AVAILABLE:
            raise _LockTimeout(message) from exc
        if isinstance(cause, psycopg.OperationalError) and sqlstate is None:
            raise InfrastructureError(f"the database connection broke: {message}") from exc
        raise _StatementFailed(f"{message} (SQLSTATE {sqlstate})" if sqlstate else message) from exc


# --- connections --------------------------------------------------------------------------------


def _plain_url(url: str) -> str:
    """A libpq URL (psycopg), from one that may name a SQLAlchemy driver."""
    return re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql://", url)


def _sqlalchemy_url(url: str) -> str:
    return re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql+psycopg://", url)


@contextmanager
def _connect(url: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit psycopg connection; an unreachable database is an InfrastructureError."""
    import psycopg

    try:
        conn = psycopg.connect(
            _plain_url(url), autocommit=True, connect_timeout=10, application_name=_APPLICATION
        )
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InfrastructureError(
            f"cannot connect to the app's database: {reason}",
            hint="is the database up and database.url right? (the password is never shown)",
        ) from exc
    with conn:
        yield conn


@contextmanager
def _advisory_lock(url: str, wait: timedelta) -> Iterator[psycopg.Connection[Any]]:
    """Hold the migrators' session-level advisory lock; LockHeld when not free within ``wait``."""
    deadline = time.monotonic() + wait.total_seconds()
    with _connect(url) as conn:
        while not _try_lock(conn):
            if time.monotonic() >= deadline:
                raise LockHeld(
                    f"another migrator holds the migration lock of this database{_holder(conn)}",
                    hint=f"wait for it to finish; rollout waited {wait.total_seconds():g} s",
                )
            time.sleep(0.2)
        try:
            yield conn
        finally:
            with suppress(Exception):
                conn.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK,))


def _try_lock(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (ADVISORY_LOCK,)).fetchone()
    return bool(row and row[0])


def _holder(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute(
        "SELECT a.pid, a.application_name, a.client_addr::text FROM pg_locks l"
        " JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted"
        " AND (l.classid::bigint << 32 | l.objid::bigint) = %s LIMIT 1",
        (ADVISORY_LOCK,),
    ).fetchone()
    if row is None:
        return ""
    pid, application, address = row
    return f" (pid {pid}, {application or 'no application name'}, from {address or 'local socket'})"
